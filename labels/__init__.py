"""Labelled scenes: face boxes from DeepForest CSVs or GIS vector files, in scene pixels."""
