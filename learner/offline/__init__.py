"""``vlmrl offline``: offline datasets converted to RLlib transitions, language-conditioned IQL with AWR policy extraction, and simulator evaluation of the result."""
