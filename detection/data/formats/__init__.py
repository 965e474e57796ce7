"""Annotation formats: one reader and one writer of the canonical table (``detection.data.table``) each.

``gtsdb`` (gt.txt), ``voc`` (Pascal VOC XML), ``coco`` (COCO JSON, boxes and person keypoints),
``csv`` (the canonical table, and common CSV layouts), ``yolo`` (YOLO txt) and ``kpjson`` (the
torchvision references' bbox + keypoint JSON). ``detection.data.convert`` holds the registry.
"""
