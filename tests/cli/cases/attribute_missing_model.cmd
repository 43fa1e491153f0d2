attribute --base no-such-base merged donor --quiet
