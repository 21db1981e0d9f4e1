"""
Trust for the GENI face: who is calling, and may they do this?

The package answers one question for the GENI AM API face: I{may this caller
do this method on this target?}  It is split by concern:

  - L{am.trust.gate}: L{Trust<am.trust.gate.Trust>}, the one entry point
    (C{Trust.fromPaths(...)}, C{trust.authorize(...)} returning a
    L{Grant<am.trust.gate.Grant>}).
  - L{am.trust.errors}: L{TrustError<am.trust.errors.TrustError>} and the
    GENI codes it carries.
  - L{am.trust.tls}: the TLS listener options that require a client
    certificate, and C{callerFromRequest}.
  - L{am.trust.certs}: certificate loading, GENI URNs from certificates, and
    chain checks against only the configured roots; L{am.trust.urn}: URNs.
  - L{am.trust.credential}, L{am.trust.signature}, L{am.trust.verifier},
    L{am.trust.speaksfor}, L{am.trust.policy}: parsing, signature checks,
    delegation, speaks-for and the method-to-privilege table.
  - L{am.devtools.authority}: C{marvin-authority}, a development and test
    authority (not a production clearinghouse).
"""
