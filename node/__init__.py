"""
marvind: the node agent.
"""
