"""
Store implementations of L{am.interfaces.IStore}.
"""
