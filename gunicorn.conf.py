"""gunicorn's settings for Microblog, read by every `gunicorn` started from the project root
(run.sh, deploy/microblog-web.service, the tests).

gunicorn runs the worker processes; waitress serves HTTP inside each of them (web_server.py
says why: gunicorn's thread worker lets clients that send a byte a second hold every thread).
"""

worker_class = "web_server.WaitressWorker"
