"""VLM backends (transformers, vLLM) behind the VLM scorers, and builders of tiny local test models."""
