"""
Tests for the default Docker hooks shipped in C{files/hooks}, run as real
scripts against a fake C{docker} command that records its arguments and keeps
a little container state in files.
"""

from __future__ import annotations

import os
import stat
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from node.config import MarvindConfig
from node.hooks import ProcessHookRunner
from node.state import StateStore, TaskRecord

HOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "files", "hooks")

# Containers are files "c-<name>" holding "<running> <exit code>"; tags are
# files "t-<tag>"; every call is appended to the file "calls".
_FAKE_DOCKER = r"""#!/bin/sh
s="$FAKE_DOCKER_STATE"
echo "$*" >> "$s/calls"
last() { for a in "$@"; do l=$a; done; echo "$l"; }
case "$1" in
info) [ -e "$s/daemon-down" ] && exit 1; echo "$s"; exit 0 ;;
pull) [ -e "$s/pull-fails" ] && { echo "pull access denied" >&2; exit 1; }; exit 0 ;;
tag) touch "$s/t-$3"; exit 0 ;;
image) case "$2" in
       inspect) [ -e "$s/t-$3" ] ;;
       rm) rm -f "$s/t-$3" ;;
       esac; exit $? ;;
inspect) c="$s/c-$(last "$@")"; [ -e "$c" ] || exit 1
         read running code < "$c"
         case "$3" in *ExitCode*) echo "$running $code" ;; *) echo "$running" ;; esac; exit 0 ;;
run) name=""; prev=""; for a in "$@"; do [ "$prev" = --name ] && name=$a; prev=$a; done
     echo "${FAKE_RUN_STATE:-true 0}" > "$s/c-$name"; echo 0123abcd; exit ${FAKE_RUN_RC:-0} ;;
stop) echo "false 0" > "$s/c-$(last "$@")"; exit 0 ;;
rm) rm -f "$s/c-$(last "$@")"; exit 0 ;;
logs) echo "experiment output"; exit 0 ;;
esac
exit 99
"""


class DockerHookTests(SynchronousTestCase):
    """
    C{files/hooks/{deploy,start,stop,check}} with a fake docker.
    """

    def setUp(self) -> None:
        base = os.path.abspath(self.mktemp())
        self.docker = os.path.join(base, "docker-state")
        binDir = os.path.join(base, "bin")
        os.makedirs(self.docker)
        os.makedirs(binDir)
        with open(os.path.join(binDir, "docker"), "w") as f:
            f.write(_FAKE_DOCKER)
        os.chmod(os.path.join(binDir, "docker"), stat.S_IRWXU)
        self.store = StateStore(os.path.join(base, "state"))
        self.task = TaskRecord(
            id="42", expid=7, start=1000, stop=2000,
            options={"script": "registry.example/exp:1", "_ssh_key": "PRIVATE-KEY-TEXT"},
        )
        self.store.writeTaskConfig(self.task, "5")
        config = MarvindConfig(
            controllerURL="https://ctl.example/v1", caFile="", nodeId="5", certificateFile="",
            keyFile="", stateDirectory=self.store.directory, hooks={},
            hookEnvironment={
                "FAKE_DOCKER_STATE": self.docker, "MARVIN_START_SETTLE": "0",
                "MARVIN_DOCKER_RUN_OPTIONS": "--net=container:monroe --cap-add NET_ADMIN",
            },
        )
        self.runner = ProcessHookRunner(None, config, self.store)
        self.path = binDir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin")

    def hook(self, action: str, argument: str | None = None, **extra: str) -> tuple[int, str]:
        env = self.runner.environment(action, self.task, argument)
        env["PATH"] = self.path
        env.update(extra)
        args = [os.path.join(HOOKS, action), self.task.id] + ([argument] if argument else [])
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout + done.stderr

    def calls(self) -> list[str]:
        with open(os.path.join(self.docker, "calls")) as f:
            return [line.strip() for line in f]

    def container(self, state: str) -> None:
        with open(os.path.join(self.docker, "c-marvin-42"), "w") as f:
            f.write(state + "\n")

    def test_deploy(self) -> None:
        """
        Deploy pulls the image and tags it C{marvin-task:<schedid>}.
        """
        code, output = self.hook("deploy", self.task.image)
        self.assertEqual(code, 0, output)
        self.assertIn("pull --quiet registry.example/exp:1", self.calls())
        self.assertIn("tag registry.example/exp:1 marvin-task:42", self.calls())

    def test_deployDelayed(self) -> None:
        """
        A failing pull exits 100, too little disk 101: both C{delayed}.
        """
        open(os.path.join(self.docker, "pull-fails"), "w").close()
        self.assertEqual(self.hook("deploy", self.task.image)[0], 100)
        code, output = self.hook("deploy", self.task.image, MARVIN_MIN_FREE_KB=str(2**62))
        self.assertEqual(code, 101)
        self.assertIn("kB free", output)

    def test_start(self) -> None:
        """
        Start runs the deployed tag detached as C{marvin-<schedid>} with the
        configuration mounted read-only and the extra options; no secret
        appears in its output.
        """
        self.hook("deploy", self.task.image)
        code, output = self.hook("start", "started")
        self.assertEqual(code, 0, output)
        run = [c for c in self.calls() if c.startswith("run ")]
        self.assertEqual(len(run), 1)
        self.assertIn("--detach --name marvin-42", run[0])
        self.assertIn(f"--volume {self.store.configPath('42')}:/monroe/config:ro", run[0])
        self.assertIn(f"--volume {self.store.taskDirectory('42')}/results:/monroe/results", run[0])
        self.assertTrue(run[0].endswith("--net=container:monroe --cap-add NET_ADMIN marvin-task:42"))
        self.assertNotIn("PRIVATE-KEY-TEXT", output)

    def test_startAlreadyRunning(self) -> None:
        """
        Start (e.g. C{restarted} after an agent crash) leaves a running
        container alone and succeeds.
        """
        self.container("true 0")
        self.assertEqual(self.hook("start", "restarted")[0], 0)
        self.assertFalse([c for c in self.calls() if c.startswith("run ")])

    def test_startFailures(self) -> None:
        """
        No deployed image: 12; a container that exits at once with an error:
        10; a failing docker run: its exit code.
        """
        self.assertEqual(self.hook("start", "started")[0], 12)
        self.hook("deploy", self.task.image)
        self.assertEqual(self.hook("start", "started", FAKE_RUN_STATE="false 3")[0], 10)
        os.unlink(os.path.join(self.docker, "c-marvin-42"))
        self.assertEqual(self.hook("start", "started", FAKE_RUN_RC="125")[0], 125)

    def test_stop(self) -> None:
        """
        Stop stops and removes the container, keeps its output, drops the tag.
        """
        self.hook("deploy", self.task.image)
        self.container("true 0")
        code, output = self.hook("stop", "stopped")
        self.assertEqual(code, 0, output)
        self.assertIn("stop --time 10 marvin-42", self.calls())
        self.assertIn("rm --force marvin-42", self.calls())
        self.assertIn("image rm marvin-task:42", self.calls())
        with open(os.path.join(self.store.taskDirectory("42"), "results", "container.log")) as f:
            self.assertEqual(f.read(), "experiment output\n")

    def test_stopAlreadyExited(self) -> None:
        """
        At the stop time, a container that had exited gives 10 (finished);
        clean-up for other reasons succeeds.
        """
        self.container("false 0")
        self.assertEqual(self.hook("stop", "stopped")[0], 10)
        self.container("false 0")
        self.assertEqual(self.hook("stop", "aborted")[0], 0)

    def test_check(self) -> None:
        """
        Check: 0 running, 10 exited or gone, 2 when docker does not answer.
        """
        self.container("true 0")
        self.assertEqual(self.hook("check")[0], 0)
        self.container("false 0")
        self.assertEqual(self.hook("check")[0], 10)
        os.unlink(os.path.join(self.docker, "c-marvin-42"))
        self.assertEqual(self.hook("check")[0], 10)
        open(os.path.join(self.docker, "daemon-down"), "w").close()
        self.assertEqual(self.hook("check")[0], 2)
