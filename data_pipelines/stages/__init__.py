"""Stages: caption, distill, rewrite, verify, curate — functions over ``datasets.Dataset``, cached on disk."""
