"""routing/: decides. Q&A backend, escalation policy, agent queue. Works on text; knows nothing of audio or HTTP."""
