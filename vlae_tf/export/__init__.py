"""SavedModel export with plain-tensor signatures and in-graph input checks."""
