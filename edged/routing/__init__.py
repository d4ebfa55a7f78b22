"""Routing policy: device load, the learned pre-generation router, the AUTO score and cascade, the cloud
budget, and the one decision function (`edged.routing.decision.decide`). See docs/routing.md."""
