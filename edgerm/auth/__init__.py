"""Who may talk to the master, and what each of them may do.

See :mod:`edgerm.auth.principal` (the model and the ``Authenticator``
interface every transport uses), :mod:`edgerm.auth.credentials` (the
credentials file: token hashes, roles, bindings), :mod:`edgerm.auth.policy`
(authorization, pure) and :mod:`edgerm.auth.limits` (abuse limits per
principal). docs/security.md describes the design.
"""
