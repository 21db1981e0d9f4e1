"""
The aggregate manager: the scheduling core, its store, and the GENI AM API face.
"""
