"""
The C{marvind} twistd plugin; the work is in L{node.tap}.
"""

from twisted.application.service import ServiceMaker

marvind = ServiceMaker(
    "marvind", "node.tap", "Marvin node agent: runs the node's scheduled tasks.", "marvind"
)
