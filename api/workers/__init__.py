"""The bridge's background workers: the indexer (chain → store), the settlement relayer (store → chain)
and the report writer (group commit of accepted reports)."""
