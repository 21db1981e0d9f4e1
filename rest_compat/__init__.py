"""
The legacy MONROE REST API as a compatibility resource on the controller's site.
"""
