"""People: the agent queue at run time, agent and supervisor consoles, accounts, audit log, masking."""
