"""vlmrl.learner."""
