"""Identities apicrud does not issue itself: bearer JWTs of trusted issuers
(:mod:`.bearer`), OpenID Connect login (:mod:`.oidc`), and the verification keys both
read (:mod:`.jwks`)."""
