"""
twistd plugin: C{twistd -n marvinctld --config PATH} (or C{--demo}).

Kept tiny: it names the module holding C{Options} and C{makeService}, so the
plugin scan imports nothing heavy.
"""

from twisted.application.service import ServiceMaker

marvinctld = ServiceMaker(
    "Marvin controller",
    "am.ctl.service",
    "The Marvin controller: MONROE REST API and GENI AM API over one scheduling core.",
    "marvinctld",
)
