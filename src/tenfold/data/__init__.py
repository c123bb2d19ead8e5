"""Datasets as torch Datasets: built-in (digits, procedural shapes, events) and real formats.

Nothing here downloads; a missing dataset raises DataError saying which files to put where.
"""

from tenfold.data.base import ArrayDataset, stratified_split
from tenfold.data.digits import digits
from tenfold.data.shapes import shapes

__all__ = ["ArrayDataset", "stratified_split", "digits", "shapes"]
