"""
The GENI AM API v3 face: XML-RPC methods translated onto the scheduling core.
"""
