"""vlmrl.actors."""
