recipe 2>&1
