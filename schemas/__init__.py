"""
Marvin's own schemas (RSpec extension XSD, OpenAPI document), shipped as package data.
"""
