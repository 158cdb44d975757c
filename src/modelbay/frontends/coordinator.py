"""Which role this frontend plays, and the switch from follower to leader.

At start-up a frontend takes the leader lock if it is free and then runs the deployment
controller, the control socket and (through the zygote) every replica; otherwise it
follows. A follower that loses its leader (the process died: its replicas died with it)
tries the lock again, and the first to get it leads from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable

from modelbay.frontends.epochs import Domain, SharedEpochs
from modelbay.frontends.follower import FollowerController
from modelbay.frontends.leader import ControlServer
from modelbay.frontends.run import RunDir
from modelbay.serving.controller import DeploymentController

log = logging.getLogger("modelbay.frontends")

Controller = DeploymentController | FollowerController


class Coordinator:
    """Starts this frontend as leader or follower and installs its controller."""

    def __init__(
        self,
        run: RunDir,
        epochs: SharedEpochs,
        leader: Callable[[str], DeploymentController],
        follower: Callable[[Callable[[], None]], FollowerController],
        install: Callable[[Controller], None],
    ):
        self.run = run
        self.epochs = epochs
        self._make_leader = leader
        self._make_follower = follower
        self._install = install
        self.controller: Controller | None = None
        self._control: ControlServer | None = None
        self._promotion: asyncio.Task[None] | None = None
        epochs.on_change(Domain.DEPLOYMENTS, self._reconcile_soon)
        epochs.on_change(Domain.MODELS, self._reconcile_soon)

    def choose(self) -> Controller:
        """Take the lead if it is free (else follow); the controller is installed, not
        started."""
        if self.run.try_lead():
            assert self.run.sockets is not None
            self._set(self._make_leader(str(self.run.sockets)))
        else:
            self._set(self._make_follower(self._leader_gone))
        assert self.controller is not None
        return self.controller

    async def start(self) -> None:
        if isinstance(self.controller, DeploymentController):
            await self._start_leading(self.controller)
        elif self.controller is not None:
            self.controller.start()

    async def stop(self) -> None:
        if self._promotion is not None:
            await asyncio.gather(self._promotion, return_exceptions=True)
        if self._control is not None:
            await self._control.stop()
        if self.controller is not None:
            await self.controller.stop()
        self.run.close()

    async def _start_leading(self, controller: DeploymentController) -> None:
        assert self.run.sockets is not None
        control = ControlServer(controller, str(self.run.sockets / "control.sock"))
        await control.start()
        self._control = control
        controller.start()
        self.run.publish(control.path)
        log.info("this frontend leads (pid %s)", os.getpid())

    def _set(self, controller: Controller) -> None:
        self.controller = controller
        self._install(controller)

    def _reconcile_soon(self) -> None:
        if isinstance(self.controller, DeploymentController):
            self.controller.notify()

    def _leader_gone(self) -> None:
        if self._promotion is None and self.run.try_lead():
            self._promotion = asyncio.get_running_loop().create_task(self._promote())

    async def _promote(self) -> None:
        assert self.run.sockets is not None
        old = self.controller
        leader = self._make_leader(str(self.run.sockets))
        self._set(leader)
        await self._start_leading(leader)
        if old is not None:
            await old.stop()
