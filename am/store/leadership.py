# -*- test-case-name: tests.test_leadership -*-
"""
Which controller runs the background loops (allocation expiry, the sweep,
the periodic inventory sync) when several share one database.

Leadership is about not doing the same work twice, not about safety: every
loop is a core command, one transaction that re-reads what it changes, so two
controllers that both believed they led for a moment would only repeat work.
With SQLite there is one controller, always the leader (L{AlwaysLeader});
PostgreSQL elects one (L{am.store.pgleader}).
"""

from __future__ import annotations

from zope.interface import Attribute, Interface, implementer


class ILeadership(Interface):
    """
    This controller's standing among those sharing its database.
    """

    leading = Attribute("Whether this controller runs the background loops now.")

    def start():
        """
        Take part: settle the first election before returning, then keep
        trying (or checking) on a timer.
        """

    def stop():
        """
        Step down (another controller takes over at its next try).
        """


@implementer(ILeadership)
class AlwaysLeader:
    """
    The one controller of a database no other controller opens (SQLite, the
    in-memory stores of the tests).
    """

    leading = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


@implementer(ILeadership)
class Follower:
    """
    A worker process of a controller (L{am.ctl.workers}): its main process
    leads.
    """

    leading = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


def leadershipOf(store: object) -> ILeadership:
    """
    The leadership a store offers (C{store.leadership()}), else L{AlwaysLeader}.
    """
    make = getattr(store, "leadership", None)
    return make() if make is not None else AlwaysLeader()
