"""ManiSkill tasks with task texts, observation/frame wrappers, and episode dataset readers/writers."""
