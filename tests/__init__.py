"""
Marvin's tests; run with pytest (or trial).
"""
