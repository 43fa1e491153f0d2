no-such-command
