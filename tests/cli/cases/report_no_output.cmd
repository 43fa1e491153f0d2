report "$here/../data/report/audit.json"
