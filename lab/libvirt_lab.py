# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's libvirt part: each hypervisor a file of libvirt's test driver.

libvirt's test driver (https://libvirt.org/drvtest.html) reads a node
description from the file of a `test:///PATH` URI each time a client connects,
so each lab host is one such file, and the state a client changes lives only as
long as its connection. What the lab shows is therefore the file: power
changes made through the collection are not kept, and the power counts are
null (not observed). Real power cycles, with libvirt's stop reasons, are
proven on the QEMU guests of tests/peers/libvirt.

Faults act on the files: a dead host is a file moved aside (the URI no longer
opens, as a host that does not answer), a crashed VM is its run state set to
shut off in the file.
"""

import os
import uuid as uuidlib
import xml.etree.ElementTree as ET

TEST_NS = "http://libvirt.org/schemas/domain/test/1.0"
ET.register_namespace("test", TEST_NS)
# virDomainState numbers, as <test:runstate> takes them
RUNSTATE = {"running": 1, "suspended": 3, "stopped": 5}
POWER = {1: "running", 2: "running", 3: "suspended", 4: "stopped", 5: "stopped", 6: "stopped", 7: "suspended"}
NODE = """<node>
  <cpu><mhz>2400</mhz><model>x86_64</model><active>16</active><total>16</total><nodes>1</nodes>
  <sockets>1</sockets><cores>8</cores><threads>2</threads></cpu>
  <memory>67108864</memory>
</node>"""
NO_GUEST = ("libvirt's test driver has no guest agent and no guest to hang or to ignore a shutdown; "
            "the QEMU guests of tests/peers/libvirt do that")


def _hosts(ep):
    for cluster in ep.get("clusters") or []:
        for host in cluster.get("hosts") or []:
            yield cluster.get("name"), host
    for host in ep.get("hosts") or []:
        yield None, host


class LibvirtLab:
    name = "libvirt"
    plugin = "virtops.unified.libvirt"

    def check(self, ep):
        where = "endpoint %s" % ep["name"]
        driver = ep.get("driver", "test")
        if driver != "test":
            raise ValueError("%s: driver %r is not in the lab yet (only test: libvirt's test:/// files); the real "
                             "QEMU guests are those of tests/peers/libvirt" % (where, driver))
        for key in ("username", "password"):
            if key in ep:
                raise ValueError("%s: %s: libvirt's test:/// driver takes no credentials" % (where, key))
        names = set()
        for _cluster, host in _hosts(ep):
            if host["name"] in names:
                raise ValueError("%s: host %s is listed twice" % (where, host["name"]))
            names.add(host["name"])
            for key in ("kind", "of", "power", "graceful"):
                if key in host:
                    raise ValueError("%s host %s: %s is not a libvirt host field" % (where, host["name"], key))
            if host.get("state", "connected") != "connected":
                raise ValueError("%s host %s: state %s: a libvirt host is its own endpoint, connected or not "
                                 "answering (the fault host-down)" % (where, host["name"], host["state"]))
            vms = set()
            for vm in host.get("vms") or []:
                if vm["name"] in vms:
                    raise ValueError("%s host %s: libvirt domain names are unique per host: %s is there twice"
                                     % (where, host["name"], vm["name"]))
                vms.add(vm["name"])
                for key, why in (("folder", "libvirt has no folders"),
                                 ("priority", "libvirt keeps no restart priority (compose virt_restart_priority)"),
                                 ("heartbeat", NO_GUEST), ("graceful", NO_GUEST)):
                    if key in vm and not (key == "heartbeat" and vm[key] == "none"):
                        raise ValueError("%s VM %s: %s: %s" % (where, vm["name"], key, why))

    # --- up ------------------------------------------------------------------
    @staticmethod
    def _uuid(ep, host, vm):
        if vm.get("uuid"):
            return vm["uuid"]
        return str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, "virtops-lab:%s/%s/%s" % (ep["name"], host["name"], vm["name"])))

    def _node(self, ep, host):
        node = ET.fromstring(NODE)
        for vm in host.get("vms") or []:
            dom = ET.SubElement(node, "domain", {"type": "test"})
            ET.SubElement(dom, "name").text = vm["name"]
            ET.SubElement(dom, "uuid").text = self._uuid(ep, host, vm)
            ET.SubElement(dom, "memory", {"unit": "MiB"}).text = str(vm.get("memory_mb", 1024))
            ET.SubElement(dom, "vcpu").text = str(vm.get("cpus", 1))
            ET.SubElement(ET.SubElement(dom, "os"), "type").text = "hvm"
            ET.SubElement(dom, "{%s}runstate" % TEST_NS).text = str(RUNSTATE[vm.get("power", "running")])
        return ET.ElementTree(node)

    def up(self, ep, workdir):
        hypervisors, files = [], {}
        for index, (cluster, host) in enumerate(_hosts(ep)):
            path = os.path.join(workdir, "host%d.xml" % index)  # host names are any UTF-8: not in paths
            for old in (path, path + ".down"):
                if os.path.exists(old):
                    os.unlink(old)
            self._node(ep, host).write(path, encoding="utf-8", xml_declaration=True)
            files[host["name"]] = path
            entry = {"name": host["name"], "uri": "test://" + path}
            if cluster:
                entry["cluster"] = cluster
            hypervisors.append(entry)
        return {"pids": [], "listen": None, "files": files, "source": {"hypervisors": hypervisors}, "credentials": {}}

    def down(self, ep, rec):
        """Nothing runs: the files stay for a look afterwards."""

    # --- state ----------------------------------------------------------------
    def state(self, ep, rec):
        import libvirt  # pylint: disable=import-outside-toplevel
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        machines, hosts = [], []
        for cluster, host in _hosts(ep):
            path = rec["files"][host["name"]]
            alive = os.path.exists(path)
            hosts.append({"endpoint": ep["name"], "name": host["name"], "cluster": cluster,
                          "state": "connected" if alive else "down"})
            if not alive:
                continue
            conn = libvirt.openReadOnly("test://" + path)
            try:
                for dom in conn.listAllDomains():
                    machines.append({
                        "endpoint": ep["name"], "kind": "vm", "name": dom.name(), "uuid": dom.UUIDString(),
                        "host": host["name"], "cluster": cluster, "power": POWER.get(dom.state()[0], "unknown"),
                        "heartbeat": "none", "power_ons": None, "graceful_shutdowns": None, "hard_offs": None})
            finally:
                conn.close()
        return {"machines": machines, "hosts": hosts}

    # --- faults ----------------------------------------------------------------
    def fault(self, ep, rec, fault, name):
        files = rec["files"]
        if fault in ("host-down", "host-up", "endpoint-down", "endpoint-up"):
            targets = list(files) if fault.startswith("endpoint") else [name]
            for host in targets:
                if host not in files:
                    raise ValueError("endpoint %s has no host %r" % (ep["name"], host))
                path = files[host]
                if fault.endswith("-down") and os.path.exists(path):
                    os.rename(path, path + ".down")
                elif fault.endswith("-up") and os.path.exists(path + ".down"):
                    os.rename(path + ".down", path)
            return "%s: %s %s" % (ep["name"], ", ".join(targets),
                                  "no longer answers" if fault.endswith("-down") else "answers again")
        if fault == "host-isolate":
            raise NotImplementedError("a libvirt host is its own endpoint, with no manager to lose it: cut off "
                                      "and dead look the same from the controller; use host-down")
        if fault == "endpoint-silent":
            raise NotImplementedError("a test:/// file cannot accept a connection and stay silent")
        if fault == "vm-crash":
            return self._crash(ep, rec, name)
        raise NotImplementedError("%s: %s" % (fault, NO_GUEST))

    def _crash(self, ep, rec, name):
        wanted, _at, on_host = name.partition("@")
        hits = []
        for _cluster, host in _hosts(ep):
            if on_host and host["name"] != on_host:
                continue
            path = rec["files"][host["name"]]
            if not os.path.exists(path):
                continue
            tree = ET.parse(path)
            for dom in tree.getroot().findall("domain"):
                if dom.findtext("name") == wanted:
                    hits.append((host["name"], path, tree, dom))
        if not hits:
            raise ValueError("endpoint %s: no VM %r on a host that answers" % (ep["name"], name))
        if len(hits) > 1:
            raise ValueError("endpoint %s: %r is on %s: say which, as %s"
                             % (ep["name"], wanted, ", ".join(h[0] for h in hits),
                                " or ".join("%s@%s" % (wanted, h[0]) for h in hits)))
        host, path, tree, dom = hits[0]
        dom.find("{%s}runstate" % TEST_NS).text = str(RUNSTATE["stopped"])
        tree.write(path + ".new", encoding="utf-8", xml_declaration=True)
        os.replace(path + ".new", path)
        return "%s: %s on %s is off (crashed)" % (ep["name"], wanted, host)


PART = LibvirtLab()
