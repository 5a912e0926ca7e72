"""One-shot edit to run after `git merge main` once issue 15 (events) is in: hooks migration.publish/withdraw into libvirt_events.py and agent.py. usage: python tools/events_integration.py WORKTREE"""
import sys
root = sys.argv[1]
def edit(path, pairs):
    p = f"{root}/{path}"
    s = open(p).read()
    for a, b in pairs:
        assert a in s, (path, a)
        s = s.replace(a, b, 1)
    open(p, "w").write(s)

edit("vzlibvirt/libvirt_events.py", [
('''- LIFECYCLE stopped: the domain's state key, which the agent unwires when the domain's
  host devices are gone (a safety net for a `stopped` hook that failed or never ran);''',
'''- LIFECYCLE stopped: the domain's state key, which the agent unwires when the domain's
  host devices are gone (a safety net for a `stopped` hook that failed or never ran);
- LIFECYCLE of a live migration (migration.action): resumed after the migration, the
  domain's live XML to publish; suspended or stopped for it, the key to withdraw;'''),
('''    reconcile: Callable[[str, list[bytes]], None]  # driver, live XML of running domains
''', '''    reconcile: Callable[[str, list[bytes]], None]  # driver, live XML of running domains
    publish: Callable[[str, bytes, bool], None]  # driver, live XML, only if held back
    withdraw: Callable[[str], None]  # state key
'''),
('''    kind: str  # "apply" | "stopped" | "reconcile" | "owner"''',
 '''    kind: str  # "apply" | "stopped" | "reconcile" | "owner" | PUBLISH | WITHDRAW'''),
('''        def lifecycle(_conn, dom, event, _detail, _opaque):
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                self.jobs.put(Job(uri, "stopped", dom.UUIDString()))
''', '''        def lifecycle(_conn, dom, event, detail, _opaque):
            moved = migration.action(event, detail)
            if moved is not None:  # first: the LAN follows a migrated guest at once
                self.jobs.put(Job(uri, moved, dom.UUIDString()))
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                self.jobs.put(Job(uri, "stopped", dom.UUIDString()))
'''),
('''            xmls = [d.XMLDesc(0).encode()
                    for d in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)]
            self.handlers.reconcile(driver, xmls)
            return
''', '''            doms = conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE)
            xmls = [d.XMLDesc(0).encode() for d in doms]
            self.handlers.reconcile(driver, xmls)
            for dom, xml in zip(doms, xmls, strict=True):  # a resumed event we missed
                if dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING:
                    self.handlers.publish(driver, xml, True)
            return
        if job.kind == migration.WITHDRAW:  # from the record: the XML may be gone
            self.handlers.withdraw(f"{driver}-{job.uuid}")
            return
'''),
('''        if job.kind == "stopped":
            if not active:
                self.handlers.stopped(f"{driver}-{job.uuid}")
        elif active:''', '''        if job.kind == "stopped":
            if not active:
                self.handlers.stopped(f"{driver}-{job.uuid}")
        elif job.kind == migration.PUBLISH:
            if active:
                self.handlers.publish(driver, xml, False)
        elif active:'''),
('''from vzlibvirt import XMLNS
''', '''from vzlibvirt import XMLNS, migration
'''),
])

edit("vzlibvirt/agent.py", [
('''            apply=self._event_apply, stopped=self._event_stopped,
            reconcile=self._event_reconcile), self.stopping)
        events.start()
        return events
''', '''            apply=self._event_apply, stopped=self._event_stopped,
            reconcile=self._event_reconcile, publish=self._event_publish,
            withdraw=self._event_withdraw), self.stopping)
        # a migration's destination holds the LAN back until the resumed event
        self.resources.follows_events = True
        events.start()
        return events

    def _event_publish(self, driver: str, data: bytes, only_held: bool) -> None:
        """A migrated guest resumed here (or on its source, the migration having failed):
        proxy entries and routes in, the LAN told at once (migration.py)."""
        from vzlibvirt import migration

        with self.work:
            try:
                outcome = migration.publish(data, driver, self.config, self.store,
                                            self.resources.netlink, only_held=only_held)
            except VzError as exc:
                log.error("%s", exc.line())
                return
        if outcome is not None:
            log.info("migrated guest resumed: published (%d entries added)",
                     len(outcome.added))

    def _event_withdraw(self, key: str) -> None:
        """A guest paused or left for a migration's destination."""
        from vzlibvirt.engine import withdraw

        with self.work:
            try:
                outcome = withdraw(key, self.store, self.resources.netlink)
            except VzError as exc:
                log.error("%s", exc.line())
                return
        if outcome.removed:
            log.info("%s left for a migration: withdrawn %d entries", key,
                     len(outcome.removed))
'''),
])

print("integrated")
