# ctl.py SOCKET OP: sends {"op": OP} to a ferrofs control socket (a mount's or a cache
# node's) and prints the answer's "done" object as JSON (exit 1 on an error answer).
import json, socket, sys

s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(json.dumps({"op": sys.argv[2]}).encode() + b"\n")
line = s.makefile().readline()
answer = json.loads(line)
if "done" not in answer:
    print(answer.get("error", line), file=sys.stderr)
    sys.exit(1)
print(json.dumps(answer["done"]))
