"""
Store implementations of L{am.core.interfaces.IStore}.
"""
