"""
The scheduling core: the model, every rule, and the one door both faces use (L{am.core.scheduler}).
"""
