"""``vlmrl label``: offline datasets scored through the reward workers (RG-VLM), and the labelling worker pool the preference mode shares."""
