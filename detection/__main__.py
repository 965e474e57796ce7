from detection.cli import main

main()
