"""
The scheduling core is the only door: the faces never reach the rules or the
store directly, so every change goes through a named L{IScheduler} command.
"""

from __future__ import annotations

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from am.core.interfaces import IScheduler
from am.testing import makeScheduler

ROOT = Path(__file__).parent.parent
FACES = ("am/geni", "rest_compat")
FORBIDDEN = re.compile(
    r"am\.core\.(allocation|lifecycle|accounts|commands)\b"
    r"|from am\.core import [^\n]*\b(allocation|lifecycle|accounts|commands)\b"
    r"|scheduler\.(transact|store|_store|_change)\b"
)


class DoorTests(SynchronousTestCase):
    def test_facesOnlyTranslate(self) -> None:
        """
        No face module imports the rule modules or touches the store.
        """
        offenders = []
        for face in FACES:
            for path in sorted((ROOT / face).glob("*.py")):
                for number, line in enumerate(path.read_text().splitlines(), 1):
                    if FORBIDDEN.search(line):
                        offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
        self.assertEqual(offenders, [])

    def test_schedulerProvidesInterface(self) -> None:
        """
        The scheduler provides every command its interface declares.
        """
        scheduler, _, _ = makeScheduler(1)
        self.assertTrue(verifyObject(IScheduler, scheduler))

    def test_noStoreInView(self) -> None:
        """
        C{transact} and C{store} are not part of the scheduler's public face.
        """
        scheduler, _, _ = makeScheduler(1)
        self.assertFalse(hasattr(scheduler, "transact"))
        self.assertFalse(hasattr(scheduler, "store"))
