"""The bridge's use cases: what each endpoint does, given exactly the collaborators it needs. Routers speak
HTTP and call these; these call the store (``api.store``) and the chain (``ledger.chain``)."""
