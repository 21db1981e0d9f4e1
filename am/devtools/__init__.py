"""
Development and test tools: a development authority (C{marvin-authority}) and the demo PKI.
Not for production trust decisions.
"""
