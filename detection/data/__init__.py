"""Data: fetching, the canonical box table, format readers/writers, splitting, torch datasets."""
