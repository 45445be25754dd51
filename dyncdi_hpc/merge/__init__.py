"""Alignment (ambiguity removal), selection and merging of reconstructions."""
