"""The chain layer: the only code that imports web3 or signs.

Backends (:mod:`.backends`), the compiler and committed artifacts (:mod:`.compiler`), the deployment record
(:mod:`.deployment`) and deployment itself (:mod:`.deploy`), one ABI per address (:mod:`.contracts`), typed
reads (:mod:`.views`), call builders (:mod:`.calls`), event decoding (:mod:`.events`), lease states
(:mod:`.state`), revert decoding (:mod:`.reverts`), signatures (:mod:`.signing`) and the one transaction
sender (:mod:`.sender`); :class:`.suite.LedgerChain` wires them for one deployment. Nothing is imported
here, so a role that needs one module (the attestor: signing) does not load web3.
"""
