"""Readers for real hand datasets in their published on-disk layouts, and stand-ins written in those layouts.

Each reader module (`mpii_nzsl`, `panoptic`, `stb`, `freihand`) exposes `SPLITS` and
`read(root, split, **options) -> ReadResult`; `base` holds the common types.
"""
