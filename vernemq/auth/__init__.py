"""
Authentication and authorisation from files: C{vmq_passwd}
(L{vernemq.auth.passwd}) and C{vmq_acl} (L{vernemq.auth.acl}), plugins of
the one hook chain (L{vernemq.plugins.hooks}), plus the C{vmq-passwd}
tool (L{vernemq.auth.passwd_cli}).

L{filePlugins} builds the plugins the configuration switches on
(C{plugins.vmq_passwd}, C{plugins.vmq_acl}, both on by default as in
VerneMQ), registers them with their C{plugins.<name>.priority} and reads
their files once; the node then runs them as services so that the files
are re-read when they change.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from vernemq.auth.acl import VmqACL
from vernemq.auth.passwd import VmqPasswd
from vernemq.auth.reload import ReloadingFile
from vernemq.config import Config
from vernemq.plugins.hooks import HookChain

__all__ = ["filePlugins"]


def filePlugins(config: Config, reactor: IReactorTime, hooks: HookChain) -> list[ReloadingFile]:
    """
    Build, load and register the file-based auth plugins C{config} enables.

    @return: the plugins, to be started as services (their reload timers).
    """
    plugins: list[ReloadingFile] = []
    if config["plugins.vmq_passwd"]:
        passwd = VmqPasswd(
            config["vmq_passwd.password_file"],
            config["vmq_passwd.password_reload_interval"],
            reactor,
        )
        passwd.check()
        hooks.register(passwd, config["plugins.vmq_passwd.priority"] or 0)
        plugins.append(passwd)
    if config["plugins.vmq_acl"]:
        acl = VmqACL(
            config["vmq_acl.acl_file"],
            config["vmq_acl.acl_reload_interval"],
            reactor,
            hooks.refresh,
        )
        acl.check()
        hooks.register(acl, config["plugins.vmq_acl.priority"] or 0)
        plugins.append(acl)
    return plugins
