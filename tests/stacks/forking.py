"""A single-threaded process that forks, for test_fork.py: it must look
single-threaded to CPython at fork() (3.12+ warns otherwise; the warning is
an error here), and its sampler must come back afterwards."""
import os, sys, time, warnings
warnings.simplefilter("error", DeprecationWarning)
def burn(s):
    t = time.thread_time()
    while time.thread_time() - t < s:
        pass
def before_fork(): burn(0.2)
def after_fork(): burn(0.3)
before_fork()
pid = os.fork()
if pid == 0:
    os._exit(0)
with open("/proc/self/stat") as f:
    threads = int(f.read().rsplit(")", 1)[1].split()[17])
os.waitpid(pid, 0)
time.sleep(0.02)
with open("/proc/self/stat") as f:  # a read: the sampler comes back
    f.read()
after_fork()
with open("/proc/self/stat") as f:
    threads_later = int(f.read().rsplit(")", 1)[1].split()[17])
print("threads right after fork:", threads, "later:", threads_later)
