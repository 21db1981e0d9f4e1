"""
RSpec v3 parsing (requests) and generation (advertisements, manifests).
"""
