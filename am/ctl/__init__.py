"""
marvinctld: the controller service, its configuration and inventory sync.
"""
