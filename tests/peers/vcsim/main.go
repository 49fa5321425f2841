// Command vcsim is a vCenter simulator test peer built on govmomi 0.24's
// simulator package (Debian: golang-github-vmware-govmomi-dev).
//
// It serves the vSphere SOAP API over HTTPS (throw-away certificate) and a
// small JSON control API over plain HTTP on a second loopback port, used by
// tests to inject faults and reshape state behind the client's back.
//
// Once both listeners are ready it prints one JSON line on stdout:
//
//	{"url": "https://user:pass@127.0.0.1:PORT/sdk", "control": "http://127.0.0.1:PORT2"}
//
// Build: see build.sh (GOPATH=/usr/share/gocode GO111MODULE=off go build).
// Usage and the control API: see README.md.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	mrand "math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Interceptors.  Some calls are re-targeted (the request's _this type is
// rewritten) to peer objects that live in a registry of their own, served on
// a private SDK path (hookPath).  They must never be put in simulator.Map:
// the simulator walks every object in Map (SearchIndex.FindByUuid,
// FindByDnsName, FindByIp, FindByDatastorePath, Fetch on "ManagedEntity",
// /about, ...) and panics on objects that do not embed a mo type, or
// would hand their references to clients.
const (
	hookPath        = "/vcsimpeer-hooks"     // SDK path of the hook registry
	hookType        = "VcsimPeerVM"          // per-VM hook (see vmHook); Value is the VM's moref
	folderHookType  = "VcsimPeerFolder"      // per-folder hook (see folderHook); Value is the folder's moref
	searchHookType  = "VcsimPeerSearchIndex" // see searchHook
	searchHookValue = "SearchIndex"
	eventHookType   = "VcsimPeerEventManager" // see eventHook
)

// ---------------------------------------------------------------------------
// peer state

type vmFlags struct {
	ignoreShutdown bool // ShutdownGuest/RebootGuest accepted but never acted upon
	// hung: the guest OS hangs (POST /vm/{id}/hang, a lab VM with heartbeat
	// "lost"): heartbeat red and ShutdownGuest/RebootGuest ignored, until the
	// VM powers off (its next boot is a fresh one) or the hang is lifted.
	hung          bool
	shutdownDelay *time.Duration // nil: use the global -shutdown-delay
	tools         *bool          // nil: use the global -tools-running
	toolsDelay    *time.Duration // nil: use the global -tools-start-delay; never (<0): Tools never start
	taskDelay     time.Duration  // power tasks run this long (0: they finish at once, simulator behaviour; never (<0): they never finish)
}

// never is the delay of something that does not happen (a guest whose Tools
// never start, a task that never finishes).
const never = time.Duration(-1)

// delayFlag is a -flag that takes a Go duration or "never".
type delayFlag struct{ d time.Duration }

func (f *delayFlag) String() string { return fmtDelay(f.d) }

func (f *delayFlag) Set(s string) error {
	if s == "never" {
		f.d = never
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration >= 0 or \"never\"")
	}
	f.d = d
	return nil
}

func fmtDelay(d time.Duration) string {
	if d < 0 {
		return "never"
	}
	return d.String()
}

// seconds: the JSON form of a delay (-1: never).
func seconds(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return d.Seconds()
}

// fileLock: who holds the lock on a VM's files (keyed by .vmx path): the host
// that runs it and the VM (moref) it runs as; vm is "" for a VM the host still
// runs after vCenter removed it from its inventory (see orphanVM).
type fileLock struct {
	host, vm string
}

// orphanVM is a VM that vCenter removed from its inventory (UnregisterVM)
// while it could not reach its host: the host still has it registered, and
// runs it unless the host went down meanwhile.  vCenter takes it back when
// the host connects again (see peer.resync).
type orphanVM struct {
	path     string
	ident    vmIdentity
	running  bool
	bootTime *time.Time
}

// opRecord is one power or registration call the peer received over SOAP
// (GET /operations, GET /vm/{id}/operations).
type opRecord struct {
	Seq          int    `json:"seq"`
	Time         string `json:"time"`
	Op           string `json:"op"`
	VM           string `json:"vm"` // moref ("" for a registration that failed)
	Name         string `json:"name"`
	InstanceUUID string `json:"instanceUuid"`
	Host         string `json:"host"`
	Path         string `json:"path"`
	Result       string `json:"result"` // "success", "error" or "running"
	Fault        string `json:"fault,omitempty"`
	Finished     string `json:"finished,omitempty"`
}

type peer struct {
	model   *simulator.Model
	svc     *simulator.Service
	client  *vim25.Client       // in-process client: goes through simulator locking, no auth
	hooks   *simulator.Registry // hook objects only (hookPath); never simulator.Map
	relocMu sync.Mutex          // serialises relocations (host/pool vm-list bookkeeping)
	// creating is held for writing while a VM enters or leaves the
	// simulator's registry through RegisterVM_Task or UnregisterVM.  The
	// simulator publishes a new VM before it fills it in, without the VM's
	// lock, and updates ContainerViews that readers walk without the view's
	// lock.  The peer's own readers of VMs (the control API, FindByUuid,
	// FindAllByUuid) and the short SOAP read calls (readCalls) hold it for
	// reading.  Lock order: creating, then relocMu, then objects.
	creating      sync.RWMutex
	toolsDefault  bool
	toolsDelay    time.Duration // default time from power-on until Tools run in the guest (never: they never start)
	shutdownDelay time.Duration

	freeze freezer // POST /freeze: the SOAP service stops answering for a while

	mu    sync.Mutex
	flags map[string]*vmFlags // by VM moref value
	tasks map[string]string   // VM moref value -> name of its delayed power task that is running
	// What the .vmx of an unregistered VM would carry (the simulator keeps no
	// .vmx contents), by config.files.vmPathName; see UnregisterVM.
	unregistered map[string]vmIdentity

	boots        map[string]int      // VM moref -> number of power-ons seen (a tools start belongs to one)
	toolsPending map[string]bool     // VM moref -> its Tools start is still to come
	locks        map[string]fileLock // .vmx path -> the host (and VM) that holds its files
	// VM moref -> its power state on its host, when that differs from what
	// vCenter shows because vCenter cannot reach the host (a host powered
	// off, a guest that shut down while its host was cut off); applied when
	// the host connects again.
	truth    map[string]types.VirtualMachinePowerState
	hostDown map[string]bool       // host moref -> the machine is powered off
	disks    map[string]string     // .vmx path -> its first disk file, as last seen on a VM with devices
	orphans  map[string][]orphanVM // host moref -> VMs it has that vCenter unregistered
	ops      []opRecord
	rng      *mrand.Rand

	// What the peer saw done to VMs, for the counters in /state (see
	// countEvent): the events, and their indexes by VM moref and by the
	// VM's instanceUuid at the time.
	counts     []countEvent
	countsByVM map[string][]int
	countsByIU map[string][]int

	soap *soapEndpoint // POST /soap: the SOAP listener goes down and up again

	labHosts []labHostState // -lab: the hosts' states, applied once the estate is built
}

// countKind: what a countEvent counts.
type countKind int

const (
	countPowerOn  countKind = iota // a power-on that took effect (PowerOnVM_Task, the power-on of a reset or of a guest reboot)
	countGraceful                  // a guest shutdown or reboot the guest carried out
	countHardOff                   // a hard power-off that took effect (PowerOffVM_Task, the power-off of a reset)
)

// countEvent is one thing counted for a VM, by its moref and its
// instanceUuid at the time, so that a VM's counters go on across
// UnregisterVM and RegisterVM_Task as its operations log does.
type countEvent struct {
	vm, iu string
	kind   countKind
}

// addCountLocked records a counted event; the caller holds p.mu.
func (p *peer) addCountLocked(vm, iu string, kinds ...countKind) {
	for _, k := range kinds {
		i := len(p.counts)
		p.counts = append(p.counts, countEvent{vm: vm, iu: iu, kind: k})
		if vm != "" {
			p.countsByVM[vm] = append(p.countsByVM[vm], i)
		}
		if iu != "" {
			key := strings.ToLower(iu)
			p.countsByIU[key] = append(p.countsByIU[key], i)
		}
	}
}

// vmCounts: the counters of a VM (its moref, its instanceUuid now); the
// caller holds p.mu.
func (p *peer) vmCountsLocked(vm, iu string) (powerOns, graceful, hardOffs int) {
	seen := map[int]bool{}
	add := func(idx []int) {
		for _, i := range idx {
			if seen[i] {
				continue
			}
			seen[i] = true
			switch p.counts[i].kind {
			case countPowerOn:
				powerOns++
			case countGraceful:
				graceful++
			case countHardOff:
				hardOffs++
			}
		}
	}
	add(p.countsByVM[vm])
	if iu != "" {
		add(p.countsByIU[strings.ToLower(iu)])
	}
	return
}

// vmIdentity is what a VM keeps across UnregisterVM and RegisterVM_Task
// (vCenter reads it back from the .vmx): its name (displayName), BIOS and
// instance UUIDs, and the peer's per-VM guest behaviour, which belongs to
// the guest and so travels with its files.
type vmIdentity struct {
	name, uuid, instanceUUID string
	flags                    *vmFlags
}

func (p *peer) vmFlags(id string) vmFlags {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.flags[id]; ok {
		return *f
	}
	return vmFlags{}
}

func (p *peer) setVMFlags(id string, f func(*vmFlags)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	v, ok := p.flags[id]
	if !ok {
		v = &vmFlags{}
		p.flags[id] = v
	}
	f(v)
}

func (p *peer) toolsWanted(id string) bool {
	f := p.vmFlags(id)
	if f.tools != nil {
		return *f.tools
	}
	return p.toolsDefault
}

func (p *peer) delayFor(id string) time.Duration {
	f := p.vmFlags(id)
	if f.shutdownDelay != nil {
		return *f.shutdownDelay
	}
	return p.shutdownDelay
}

func (p *peer) toolsDelayFor(id string) time.Duration {
	f := p.vmFlags(id)
	if f.toolsDelay != nil {
		return *f.toolsDelay
	}
	return p.toolsDelay
}

// poweredOnTools records a power-on of the VM and whether its Tools start is
// still to come; it returns the power-on's number.
func (p *peer) poweredOnTools(id string, pending bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.boots[id]++
	if pending {
		p.toolsPending[id] = true
	} else {
		delete(p.toolsPending, id)
	}
	return p.boots[id]
}

// cancelTools drops a Tools start still to come (the VM stopped, or a test
// set its guest state by hand).
func (p *peer) cancelTools(id string) {
	p.mu.Lock()
	delete(p.toolsPending, id)
	p.mu.Unlock()
}

// toolsStart: Tools come up in the guest of power-on number gen, unless the
// VM stopped or was power-cycled since, or its host went down.
func (p *peer) toolsStart(ref types.ManagedObjectReference, gen int) {
	id := ref.Value
	p.mu.Lock()
	ok := p.boots[id] == gen && p.toolsPending[id]
	if ok {
		delete(p.toolsPending, id) // (a later power-on has its own start)
	}
	_, diverged := p.truth[id]
	p.mu.Unlock()
	vm := getVM(id)
	if !ok || diverged || vm == nil {
		return
	}
	simulator.Map.WithLock(vm, func() {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && p.toolsWanted(id) {
			simulator.Map.Update(vm, p.guestChangesFor(id, types.VirtualMachinePowerStatePoweredOn, true))
		}
	})
}

// toolsBoot puts the guest of a VM that just powered on (or whose guest
// rebooted) in its Tools-starting state: Tools not running and a gray
// heartbeat, then running after the VM's tools delay (at once for 0, never
// for never).  The caller holds the VM's lock.
func (p *peer) toolsBoot(obj mo.Reference, ref types.ManagedObjectReference) {
	delay := p.toolsDelayFor(ref.Value)
	gen := p.poweredOnTools(ref.Value, delay != 0)
	if delay == 0 {
		simulator.Map.Update(obj, p.guestChangesFor(ref.Value, types.VirtualMachinePowerStatePoweredOn, true))
		return
	}
	simulator.Map.Update(obj, guestChanges(types.VirtualMachinePowerStatePoweredOn, false))
	if delay > 0 {
		time.AfterFunc(delay, func() { p.toolsStart(ref, gen) })
	}
}

// --- operations log

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// recordOp logs a call on a VM (the caller may hold the VM's lock) and
// returns its sequence number for finishOp.
func (p *peer) recordOp(op string, vm *simulator.VirtualMachine) int {
	r := opRecord{Op: op, Result: "running"}
	if vm != nil {
		r.VM, r.Name = vm.Self.Value, vm.Name
		if vm.Config != nil {
			r.InstanceUUID, r.Path = vm.Config.InstanceUuid, vm.Config.Files.VmPathName
		}
		if vm.Runtime.Host != nil {
			r.Host = vm.Runtime.Host.Value // a name is filled in by opsFor
		}
	}
	return p.addOp(r)
}

func (p *peer) addOp(r opRecord) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	r.Seq = len(p.ops) + 1
	r.Time = stamp(time.Now())
	p.ops = append(p.ops, r)
	return r.Seq
}

// finishOp sets the outcome of a logged call: fault nil is a success.
func (p *peer) finishOp(seq int, fault types.BaseMethodFault) {
	p.finishOpWith(seq, func(r *opRecord) {
		r.Result = "success"
		if fault != nil {
			r.Result, r.Fault = "error", faultName(fault)
		}
	})
}

func (p *peer) finishOpWith(seq int, f func(*opRecord)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq < 1 || seq > len(p.ops) {
		return
	}
	r := &p.ops[seq-1]
	was := r.Result
	f(r)
	r.Finished = stamp(time.Now())
	if was == "running" && r.Result == "success" {
		// a power task that took effect (counters in /state)
		switch r.Op {
		case "PowerOnVM_Task":
			p.addCountLocked(r.VM, r.InstanceUUID, countPowerOn)
		case "PowerOffVM_Task":
			p.addCountLocked(r.VM, r.InstanceUUID, countHardOff)
		case "ResetVM_Task":
			p.addCountLocked(r.VM, r.InstanceUUID, countHardOff, countPowerOn)
		}
	}
}

func faultName(f types.BaseMethodFault) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", f), "*types.")
}

// finishTaskOp: the outcome of a logged power task, read from the task
// (left "running" while the task runs; delayedTask finishes it then).
func (p *peer) finishTaskOp(seq int, res soap.HasFault) {
	if res == nil {
		return
	}
	if f := res.Fault(); f != nil {
		p.finishOpWith(seq, func(r *opRecord) { r.Result, r.Fault = "error", soapFaultName(f) })
		return
	}
	ref := taskRefOf(res)
	if ref == nil {
		p.finishOp(seq, nil) // a call without a task that did not fault
		return
	}
	t, ok := simulator.Map.Get(*ref).(*simulator.Task)
	if !ok {
		return
	}
	var state types.TaskInfoState
	var fault types.BaseMethodFault
	simulator.Map.WithLock(t, func() {
		state = t.Info.State
		if t.Info.Error != nil {
			fault = t.Info.Error.Fault
		}
	})
	if state == types.TaskInfoStateSuccess || state == types.TaskInfoStateError {
		p.finishOp(seq, fault)
	}
}

func soapFaultName(f *soap.Fault) string {
	if f.Detail.Fault != nil {
		return strings.TrimPrefix(fmt.Sprintf("%T", f.Detail.Fault), "*types.")
	}
	return f.String
}

func taskRefOf(res soap.HasFault) *types.ManagedObjectReference {
	switch b := res.(type) {
	case *methods.PowerOnVM_TaskBody:
		if b.Res != nil {
			return &b.Res.Returnval
		}
	case *methods.PowerOffVM_TaskBody:
		if b.Res != nil {
			return &b.Res.Returnval
		}
	case *methods.ResetVM_TaskBody:
		if b.Res != nil {
			return &b.Res.Returnval
		}
	case *methods.SuspendVM_TaskBody:
		if b.Res != nil {
			return &b.Res.Returnval
		}
	case *methods.RegisterVM_TaskBody:
		if b.Res != nil {
			return &b.Res.Returnval
		}
	}
	return nil
}

// opsFor returns the logged calls (all, or those of a VM by moref,
// instanceUuid or name), host morefs replaced by names.
func (p *peer) opsFor(match func(opRecord) bool) []opRecord {
	p.mu.Lock()
	out := make([]opRecord, 0, len(p.ops))
	for _, r := range p.ops {
		if match == nil || match(r) {
			out = append(out, r)
		}
	}
	p.mu.Unlock()
	for i := range out {
		if out[i].Host != "" {
			if name, _, ok := entityInfo(types.ManagedObjectReference{Type: "HostSystem", Value: out[i].Host}); ok {
				out[i].Host = name
			}
		}
	}
	return out
}

// --- file locks

// lockUpdate keeps the lock on a VM's files in line with its power state: a
// powered-on VM holds it on its host; powered off or suspended, it does not
// (the VMX process has exited).  The caller holds the VM's lock.
func (p *peer) lockUpdate(vm *mo.VirtualMachine, state types.VirtualMachinePowerState) {
	if vm.Config == nil || vm.Config.Files.VmPathName == "" {
		return
	}
	path, id := vm.Config.Files.VmPathName, vm.Self.Value
	p.mu.Lock()
	defer p.mu.Unlock()
	if state == types.VirtualMachinePowerStatePoweredOn {
		if vm.Runtime.Host != nil {
			p.locks[path] = fileLock{host: vm.Runtime.Host.Value, vm: id}
		}
		return
	}
	if l, ok := p.locks[path]; ok && l.vm == id {
		delete(p.locks, path)
	}
}

// lockedElsewhere: the host that holds the VM's files for another VM (or for
// a VM it runs that vCenter no longer lists).  The caller holds the VM's lock.
func (p *peer) lockedElsewhere(vm *simulator.VirtualMachine) (string, bool) {
	if vm.Config == nil {
		return "", false
	}
	p.mu.Lock()
	l, ok := p.locks[vm.Config.Files.VmPathName]
	p.mu.Unlock()
	if !ok || l.vm == vm.Self.Value {
		return "", false
	}
	name, _, _ := entityInfo(types.ManagedObjectReference{Type: "HostSystem", Value: l.host})
	return name, true
}

// lockFault is what vCenter answers a power-on of a VM whose files another
// host holds: the ESXi host cannot open the disk (GenericVmConfigFault with
// msg.disk.noBackEnd and msg.fileio.lock, "Failed to lock the file"; see
// README).  It returns the fault and the task's localized message.  The
// caller holds the VM's lock.
func (p *peer) lockFault(vm *simulator.VirtualMachine) (types.BaseMethodFault, string) {
	disk := diskPath(vm)
	if vm.Config != nil && disk == vm.Config.Files.VmPathName {
		// The simulator registers a .vmx without reading it: no devices.
		// The disk is the one the VM had when it was last seen with them.
		p.mu.Lock()
		if d, ok := p.disks[disk]; ok {
			disk = d
		}
		p.mu.Unlock()
	}
	open := fmt.Sprintf("Cannot open the disk '%s' or one of the snapshot disks it depends on.", disk)
	const lock = "Failed to lock the file"
	f := &types.GenericVmConfigFault{Reason: lock}
	f.FaultMessage = []types.LocalizableMessage{
		{Key: "msg.disk.noBackEnd", Arg: []types.KeyAnyValue{{Key: "1", Value: disk}}, Message: open},
		{Key: "msg.fileio.lock", Message: lock},
	}
	return f, fmt.Sprintf("An error was received from the ESX host while powering on VM %s. "+
		"Failed to start the virtual machine. %s %s", vm.Name, open, lock)
}

// diskPath: the VM's first virtual disk file, else its .vmx.
func diskPath(vm *simulator.VirtualMachine) string {
	if vm.Config == nil {
		return ""
	}
	for _, d := range vm.Config.Hardware.Device {
		if disk, ok := d.(*types.VirtualDisk); ok {
			if b, ok := disk.Backing.(types.BaseVirtualDeviceFileBackingInfo); ok {
				if name := b.GetVirtualDeviceFileBackingInfo().FileName; name != "" {
					return name
				}
			}
		}
	}
	return vm.Config.Files.VmPathName
}

// offOnItsHost: the VM's host is powered off, so the VM does not run
// whatever vCenter last saw.
func (p *peer) offOnItsHost(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.truth[id]
	return ok && s != types.VirtualMachinePowerStatePoweredOn
}

// freezer makes the SOAP service silent: while it is frozen, every request
// that reaches the SOAP handler (after TCP and TLS, as a hung vpxd) waits
// until the freeze ends, and a request whose client has gone is dropped, not
// run late.  In-process work (a delayed shutdown, a delayed task, the control
// API) goes on: the hosts keep running while vCenter does not answer.
type freezer struct {
	mu      sync.Mutex
	forever bool // POST /soap {"state": "silent"}: frozen until thawed
	until   time.Time
	thaw    chan struct{} // closed (and replaced) whenever the freeze changes
	blocked int           // requests waiting now
}

func (f *freezer) set(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until, f.forever = time.Time{}, false
	if d > 0 {
		f.until = time.Now().Add(d)
	}
	close(f.thaw)
	f.thaw = make(chan struct{})
}

// setForever freezes until the next set.
func (f *freezer) setForever() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until, f.forever = time.Time{}, true
	close(f.thaw)
	f.thaw = make(chan struct{})
}

// wait blocks while frozen; false when the client went away meanwhile.
func (f *freezer) wait(ctx context.Context) bool {
	for {
		f.mu.Lock()
		left, thaw := time.Until(f.until), f.thaw
		if f.forever {
			left = time.Hour // until thawed (thaw is closed then)
		}
		if left <= 0 {
			f.mu.Unlock()
			return true
		}
		f.blocked++
		f.mu.Unlock()
		timer := time.NewTimer(left)
		select {
		case <-timer.C:
		case <-thaw:
		case <-ctx.Done():
		}
		timer.Stop()
		f.mu.Lock()
		f.blocked--
		f.mu.Unlock()
		if ctx.Err() != nil {
			return false
		}
	}
}

type freezeState struct {
	Frozen      bool    `json:"frozen"`
	SecondsLeft float64 `json:"secondsLeft"`
	Blocked     int     `json:"blocked"`
}

func (f *freezer) state() freezeState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.forever {
		return freezeState{Frozen: true, SecondsLeft: -1, Blocked: f.blocked}
	}
	left := time.Until(f.until).Seconds()
	if left < 0 {
		left = 0
	}
	return freezeState{Frozen: left > 0, SecondsLeft: left, Blocked: f.blocked}
}

// soapEndpoint is the SOAP (HTTPS) listener, which POST /soap takes down
// (connections refused: the port is closed) and brings up again on the
// same address.  The simulator behind it, the control API and the hosts go
// on meanwhile.
type soapEndpoint struct {
	mu      sync.Mutex
	addr    string // host:port; fixed by the first listen
	tls     *tls.Config
	handler http.Handler
	errLog  *log.Logger
	srv     *http.Server // nil while down
}

// listen opens the port (again); the caller holds mu.
func (e *soapEndpoint) listen() error {
	ln, err := net.Listen("tcp", e.addr)
	if err != nil {
		return err
	}
	e.addr = ln.Addr().String()
	srv := &http.Server{Handler: e.handler, ErrorLog: e.errLog}
	e.srv = srv
	go func() { _ = srv.Serve(tls.NewListener(ln, e.tls)) }()
	return nil
}

// close closes the port and every connection, also those of requests under
// way (their clients see the connection drop); the caller holds mu.
func (e *soapEndpoint) close() {
	if e.srv != nil {
		_ = e.srv.Close()
		e.srv = nil
	}
}

// set: POST /soap.  "down" closes the port; "up" thaws a freeze and listens
// (again); "silent" listens and freezes with no end (see freezer).
func (p *peer) setSOAP(state string) error {
	e := p.soap
	e.mu.Lock()
	defer e.mu.Unlock()
	switch state {
	case "down":
		e.close()
		return nil
	case "up", "silent":
		if e.srv == nil {
			if err := e.listen(); err != nil {
				return errf(http.StatusConflict, "cannot listen on %s again: %v", e.addr, err)
			}
		}
		if state == "up" {
			p.freeze.set(0)
		} else {
			p.freeze.setForever()
		}
		return nil
	}
	return errf(http.StatusBadRequest, "state must be up, down or silent")
}

func (p *peer) soapState() map[string]string {
	e := p.soap
	e.mu.Lock()
	down := e.srv == nil
	addr := e.addr
	e.mu.Unlock()
	state := "up"
	switch {
	case down:
		state = "down"
	case p.freeze.state().Frozen:
		state = "silent"
	}
	return map[string]string{"state": state, "listen": addr}
}

func (p *peer) taskDelayFor(id string) time.Duration {
	return p.vmFlags(id).taskDelay
}

func (p *peer) runningTask(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.tasks[id]
}

func vmRef(id string) types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: "VirtualMachine", Value: id}
}

func getVM(id string) *simulator.VirtualMachine {
	vm, _ := simulator.Map.Get(vmRef(id)).(*simulator.VirtualMachine)
	return vm
}

// ---------------------------------------------------------------------------
// guest (tools / heartbeat) state

const toolsVersion = "11333"

// guestChanges returns the property changes describing the guest state of a
// VM in the given power state whose tools should (or should not) be running.
func guestChanges(power types.VirtualMachinePowerState, tools bool) []types.PropertyChange {
	running := tools && power == types.VirtualMachinePowerStatePoweredOn
	trs := string(types.VirtualMachineToolsRunningStatusGuestToolsNotRunning)
	ts := types.VirtualMachineToolsStatusToolsNotRunning
	state := "notRunning"
	hb := types.ManagedEntityStatusGray
	if running {
		trs = string(types.VirtualMachineToolsRunningStatusGuestToolsRunning)
		ts = types.VirtualMachineToolsStatusToolsOk
		state = "running"
		hb = types.ManagedEntityStatusGreen
	}
	return []types.PropertyChange{
		{Name: "guest.toolsRunningStatus", Val: trs},
		{Name: "guest.toolsStatus", Val: ts},
		{Name: "guest.toolsVersion", Val: toolsVersion},
		{Name: "guest.toolsVersionStatus", Val: "guestToolsCurrent"},
		{Name: "guest.toolsVersionStatus2", Val: "guestToolsCurrent"},
		{Name: "guest.guestState", Val: state},
		{Name: "summary.guest.toolsRunningStatus", Val: trs},
		{Name: "summary.guest.toolsStatus", Val: ts},
		{Name: "summary.guest.toolsVersionStatus", Val: "guestToolsCurrent"},
		{Name: "summary.guest.toolsVersionStatus2", Val: "guestToolsCurrent"},
		{Name: "guestHeartbeatStatus", Val: hb},
		{Name: "summary.quickStats.guestHeartbeatStatus", Val: hb},
	}
}

// guestChangesFor: guestChanges for this VM.  A hung guest (vmFlags.hung)
// whose Tools run sends no heartbeats: red.
func (p *peer) guestChangesFor(id string, power types.VirtualMachinePowerState, tools bool) []types.PropertyChange {
	changes := guestChanges(power, tools)
	if !(tools && power == types.VirtualMachinePowerStatePoweredOn && p.vmFlags(id).hung) {
		return changes
	}
	for i := range changes {
		if changes[i].Name == "guestHeartbeatStatus" || changes[i].Name == "summary.quickStats.guestHeartbeatStatus" {
			changes[i].Val = types.ManagedEntityStatusRed
		}
	}
	return changes
}

// setHang makes the VM's guest hang (heartbeat red while its Tools run,
// ShutdownGuest and RebootGuest ignored) or lifts the hang (heartbeat green
// again if its Tools run).  A hang is a state of a running guest: refused
// (409) on a powered-off VM; it ends when the VM powers off.
func (p *peer) setHang(vm *simulator.VirtualMachine, on bool) error {
	id := vm.Self.Value
	if on && p.offOnItsHost(id) {
		return errf(http.StatusConflict, "%s does not run: its host is powered off", vm.Name)
	}
	var err error
	simulator.Map.WithLock(vm, func() {
		if on && vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
			err = errf(http.StatusConflict, "%s is powered off: only a running (or suspended) guest can hang", vm.Name)
			return
		}
		p.setVMFlags(id, func(f *vmFlags) { f.hung = on })
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn || vm.Guest == nil ||
			vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
			return // no heartbeat now (Tools not running, or still to start): the colour comes when they do
		}
		hb := types.ManagedEntityStatusGreen
		if on {
			hb = types.ManagedEntityStatusRed
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guestHeartbeatStatus", Val: hb},
			{Name: "summary.quickStats.guestHeartbeatStatus", Val: hb},
		})
	})
	return err
}

// watcher is a simulator.RegisterObject handler: it keeps guest state in line
// with power state changes made by any code path (SOAP power ops, guest
// shutdown, reset, control API).
type watcher struct {
	Self types.ManagedObjectReference
	p    *peer
}

func (w *watcher) Reference() types.ManagedObjectReference { return w.Self }

func (w *watcher) PutObject(o mo.Reference) {
	// Called synchronously by Registry.Put in the creating goroutine, before
	// the new VM is visible to anyone else.  An unset guestHeartbeatStatus
	// makes single-property reads (Fetch) of it fail in govmomi 0.24.
	if vm, ok := o.(*simulator.VirtualMachine); ok && vm.GuestHeartbeatStatus == "" {
		vm.GuestHeartbeatStatus = types.ManagedEntityStatusGray
	}
}

func (w *watcher) UpdateObject(o mo.Reference, changes []types.PropertyChange) {
	ref := o.Reference()
	if ref.Type != "VirtualMachine" {
		return
	}
	for _, c := range changes {
		if c.Name != "runtime.powerState" {
			continue
		}
		state := types.VirtualMachinePowerState(fmt.Sprint(c.Val))
		// Registry.Update passes the registered object; the caller holds the VM lock.
		vm, ok := o.(*mo.VirtualMachine)
		if ok {
			// vSphere: runtime.bootTime is set on a power-on from poweredOff,
			// cleared on power-off, and not changed by suspend or resume
			// (govmomi 0.24 only sets summary.runtime.bootTime, on every
			// power-on, and clears it on suspend).
			switch state {
			case types.VirtualMachinePowerStatePoweredOn:
				if vm.Runtime.BootTime == nil {
					now := time.Now().UTC()
					vm.Runtime.BootTime = &now
				}
			case types.VirtualMachinePowerStatePoweredOff:
				vm.Runtime.BootTime = nil
				// the guest is gone: its next boot is a fresh one, not hung
				w.p.setVMFlags(ref.Value, func(f *vmFlags) { f.hung = false })
			}
			vm.Summary.Runtime.BootTime = vm.Runtime.BootTime
			w.p.lockUpdate(vm, state)
		}
		tools := w.p.toolsWanted(ref.Value)
		if !tools {
			// Tools are not wanted on this VM: leave the guest info alone
			// (simulator default: toolsNotInstalled) unless they were running.
			if !ok || vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
				continue
			}
		}
		if tools && state == types.VirtualMachinePowerStatePoweredOn {
			w.p.toolsBoot(o, ref) // Tools start some time after the power-on
			continue
		}
		w.p.cancelTools(ref.Value)
		simulator.Map.Update(o, guestChanges(state, tools))
	}
}

func (w *watcher) RemoveObject(types.ManagedObjectReference) {}

// ---------------------------------------------------------------------------
// Fetch fix: govmomi 0.24's PropertyCollector.Fetch (used by pyVmomi for
// every single-property read such as vm.snapshot) indexes MissingSet[0] when
// the property is unset and panics; net/http then drops the connection.  We
// wrap the PropertyCollector singleton (the simulator explicitly supports
// wrapper types for it, see Session.Get) and answer such reads with an empty
// FetchResponse, i.e. "unset", as vCenter does.

type FetchResponse struct {
	Returnval types.AnyType `xml:"returnval,omitempty,typeattr"`
}

type fetchBody struct {
	Res    *FetchResponse `xml:"FetchResponse,omitempty"`
	Fault_ *soap.Fault    `xml:"http://schemas.xmlsoap.org/soap/envelope/ Fault,omitempty"`
}

func (b *fetchBody) Fault() *soap.Fault { return b.Fault_ }

type peerPC struct {
	simulator.PropertyCollector
}

// Fetch's request type lives in simulator/internal and cannot be named here;
// reflect.Call accepts it for an interface{} parameter.
func (pc *peerPC) Fetch(ctx *simulator.Context, req interface{}) (res soap.HasFault) {
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok && strings.Contains(re.Error(), "index out of range") {
				res = &fetchBody{Res: &FetchResponse{}}
				return
			}
			panic(r)
		}
	}()
	orig := reflect.ValueOf(&pc.PropertyCollector).MethodByName("Fetch")
	out := orig.Call([]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(req)})
	return out[0].Interface().(soap.HasFault)
}

// ---------------------------------------------------------------------------
// vmHook: guest and power operations and RelocateVM_Task on VirtualMachine
// are re-targeted (by rewriting the request's _this type, see rewrite) to a
// per-VM hook object in p.hooks, which applies the peer's rules and then
// delegates to the simulator's own implementation while holding the VM's
// lock, exactly as the simulator's dispatcher would.

type vmHook struct {
	Self types.ManagedObjectReference
	p    *peer
}

func (h *vmHook) Reference() types.ManagedObjectReference { return h.Self }

func (h *vmHook) vm() (*simulator.VirtualMachine, types.ManagedObjectReference) {
	ref := vmRef(h.Self.Value)
	return getVM(ref.Value), ref
}

func notFound(ref types.ManagedObjectReference) *soap.Fault {
	return simulator.Fault("The object has already been deleted or has not been completely created",
		&types.ManagedObjectNotFound{Obj: ref})
}

// hostRefState returns the connection state and maintenance mode of a host
// (connected and not in maintenance when href is nil or not a host).
// Lock order: VM then host (as the simulator's RelocateVM_Task does).
func hostRefState(href *types.ManagedObjectReference) (types.HostSystemConnectionState, bool, *types.ManagedObjectReference) {
	if href == nil {
		return types.HostSystemConnectionStateConnected, false, nil
	}
	ref := *href
	host, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return types.HostSystemConnectionStateConnected, false, nil
	}
	var cs types.HostSystemConnectionState
	var mm bool
	simulator.Map.WithLock(host, func() {
		cs = host.Runtime.ConnectionState
		mm = host.Runtime.InMaintenanceMode
	})
	return cs, mm, &ref
}

// hostRefFault: what vCenter refuses an operation involving that host for.
func hostRefFault(href *types.ManagedObjectReference, checkMaintenance bool) types.BaseMethodFault {
	cs, mm, ref := hostRefState(href)
	if cs != "" && cs != types.HostSystemConnectionStateConnected {
		return &types.InvalidHostConnectionState{InvalidHostState: types.InvalidHostState{Host: ref}}
	}
	if checkMaintenance && mm {
		return &types.InvalidHostState{Host: ref}
	}
	return nil
}

// hostFault: hostRefFault for the VM's host (caller holds the VM's lock).
func hostFault(vm *simulator.VirtualMachine, checkMaintenance bool) types.BaseMethodFault {
	return hostRefFault(vm.Runtime.Host, checkMaintenance)
}

func disabled(vm *simulator.VirtualMachine, name string) bool {
	for _, m := range vm.DisabledMethod {
		if m == name {
			return true
		}
	}
	return false
}

// guestPrecheck: what vCenter checks before accepting a guest operation.
func (h *vmHook) guestPrecheck(vm *simulator.VirtualMachine) *soap.Fault {
	if f := hostFault(vm, false); f != nil {
		return simulator.Fault("The operation is not allowed in the current connection state of the host.", f)
	}
	if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return simulator.Fault("The attempted operation cannot be performed in the current state ("+
			string(vm.Runtime.PowerState)+").", &types.InvalidPowerState{
			RequestedState: types.VirtualMachinePowerStatePoweredOn,
			ExistingState:  vm.Runtime.PowerState,
		})
	}
	if vm.Guest == nil || vm.Guest.ToolsRunningStatus != string(types.VirtualMachineToolsRunningStatusGuestToolsRunning) {
		return simulator.Fault("Cannot complete operation because VMware Tools is not running in this virtual machine.",
			&types.ToolsUnavailable{})
	}
	return nil
}

// delegate runs f as the simulator dispatcher would for a call on the VM:
// VM lock held (by the caller), ctx.Caller set to the VM and ctx.Map set to
// the simulator's registry (the hook call itself was dispatched with the
// hook registry, and ctx.WithLock locks through ctx.Map).
func delegate(ctx *simulator.Context, ref types.ManagedObjectReference, f func() soap.HasFault) soap.HasFault {
	savedCaller, savedMap := ctx.Caller, ctx.Map
	ctx.Caller, ctx.Map = &ref, simulator.Map
	defer func() { ctx.Caller, ctx.Map = savedCaller, savedMap }()
	return f()
}

func (h *vmHook) ShutdownGuest(ctx *simulator.Context, req *types.ShutdownGuest) soap.HasFault {
	body := &methods.ShutdownGuestBody{}
	vm, ref := h.vm()
	if vm == nil {
		body.Fault_ = notFound(ref)
		return body
	}
	var delay time.Duration
	hung := false
	seq := 0
	var ev eventRefs
	simulator.Map.WithLock(vm, func() {
		seq = h.p.recordOp("ShutdownGuest", vm)
		if disabled(vm, "ShutdownGuest") {
			body.Fault_ = simulator.Fault("method is disabled", &types.MethodDisabled{})
			return
		}
		if f := h.guestPrecheck(vm); f != nil {
			body.Fault_ = f
			return
		}
		ev = vmEventLocked(vm)
		if f := h.p.vmFlags(ref.Value); f.ignoreShutdown || f.hung {
			hung = true
			return // hung guest: accepted, nothing happens
		}
		if delay = h.p.delayFor(ref.Value); delay > 0 {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "guest.guestState", Val: "shuttingDown"}})
		}
	})
	if body.Fault_ != nil {
		h.p.finishTaskOp(seq, body)
		return body
	}
	body.Res = new(types.ShutdownGuestResponse)
	h.p.finishOp(seq, nil)
	// vSphere's VmGuestShutdownEvent is "a guest shutdown request event":
	// vCenter logs it when it passes the request on, whether or not the
	// guest then acts; VmPoweredOffEvent follows when the guest powers off.
	h.p.postEvent(&types.VmGuestShutdownEvent{VmEvent: ev.event()})
	switch {
	case hung:
	case delay > 0:
		go h.p.delayedShutdown(ref, delay)
	default:
		h.p.guestPowersOff(ref)
	}
	return body
}

// delayedShutdown completes an accepted ShutdownGuest after a delay.
func (p *peer) delayedShutdown(ref types.ManagedObjectReference, delay time.Duration) {
	time.Sleep(delay)
	if f := p.vmFlags(ref.Value); getVM(ref.Value) == nil || f.ignoreShutdown || f.hung {
		return
	}
	p.guestPowersOff(ref)
}

// guestPowersOff: the guest OS has shut down and the VM powers itself off.
// vCenter sees it (VmPoweredOffEvent) unless it has lost the VM's host: then
// the VM is off on its host only, and vCenter learns it when the host
// connects again (see resync).  The guest's own power-off is no
// PowerOffVM_Task, and no VmGuestShutdownEvent is posted again.
func (p *peer) guestPowersOff(ref types.ManagedObjectReference) {
	vm := getVM(ref.Value)
	if vm == nil || p.offOnItsHost(ref.Value) {
		return
	}
	off := types.VirtualMachinePowerStatePoweredOff
	var ev eventRefs
	seen := false
	simulator.Map.WithLock(vm, func() {
		if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
			return
		}
		p.mu.Lock()
		p.addCountLocked(ref.Value, vm.Config.InstanceUuid, countGraceful) // the guest carried it out
		p.mu.Unlock()
		if hostFault(vm, false) != nil {
			p.mu.Lock()
			p.truth[ref.Value] = off
			if l, ok := p.locks[vm.Config.Files.VmPathName]; ok && l.vm == ref.Value {
				delete(p.locks, vm.Config.Files.VmPathName)
			}
			delete(p.toolsPending, ref.Value)
			p.mu.Unlock()
			return
		}
		ev = vmEventLocked(vm)
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "runtime.powerState", Val: off},
			{Name: "summary.runtime.powerState", Val: off},
		})
		seen = true
	})
	if seen {
		p.postEvent(&types.VmPoweredOffEvent{VmEvent: ev.event()})
	}
}

func (h *vmHook) RebootGuest(ctx *simulator.Context, req *types.RebootGuest) soap.HasFault {
	body := &methods.RebootGuestBody{}
	vm, ref := h.vm()
	if vm == nil {
		body.Fault_ = notFound(ref)
		return body
	}
	hung := false
	seq := 0
	var ev eventRefs
	simulator.Map.WithLock(vm, func() {
		seq = h.p.recordOp("RebootGuest", vm)
		if disabled(vm, "RebootGuest") {
			body.Fault_ = simulator.Fault("method is disabled", &types.MethodDisabled{})
			return
		}
		if body.Fault_ = h.guestPrecheck(vm); body.Fault_ != nil {
			return
		}
		ev = vmEventLocked(vm)
		f := h.p.vmFlags(ref.Value)
		if hung = f.ignoreShutdown || f.hung; !hung {
			// govmomi 0.24 has no RebootGuest.  The VM stays powered on
			// (runtime.bootTime unchanged); its Tools stop with the guest OS
			// and start again after the tools delay.  The guest carried
			// it out: one graceful shutdown and one power-on (/state).
			h.p.toolsBoot(vm, ref)
			iu := ""
			if vm.Config != nil {
				iu = vm.Config.InstanceUuid
			}
			h.p.mu.Lock()
			h.p.addCountLocked(ref.Value, iu, countGraceful, countPowerOn)
			h.p.mu.Unlock()
		}
	})
	if body.Fault_ != nil {
		h.p.finishTaskOp(seq, body)
		return body
	}
	body.Res = new(types.RebootGuestResponse)
	h.p.finishOp(seq, nil)
	h.p.postEvent(&types.VmGuestRebootEvent{VmEvent: ev.event()}) // a guest reboot request event
	return body
}

// eventRefs is what a VM event needs from the VM, taken under its lock; the
// event itself is built (evRefs.event) after the lock is released, since it
// reads the host, the compute resource and the folders above the VM, and the
// peer takes folder locks before VM locks elsewhere (RegisterVM_Task).
type eventRefs struct {
	ref          types.ManagedObjectReference
	name         string
	host, parent *types.ManagedObjectReference
}

func vmEventLocked(vm *simulator.VirtualMachine) eventRefs {
	return eventRefs{vm.Self, vm.Name, copyRef(vm.Runtime.Host), copyRef(vm.Parent)}
}

func (e eventRefs) event() types.VmEvent { return eventArgs(e.ref, e.name, e.host, e.parent) }

// vmEvent fills the arguments the simulator's event message templates use.
func vmEvent(ref types.ManagedObjectReference, name string) types.VmEvent {
	var href, parent *types.ManagedObjectReference
	if vm := getVM(ref.Value); vm != nil {
		simulator.Map.WithLock(vm, func() {
			href, parent = copyRef(vm.Runtime.Host), copyRef(vm.Parent)
		})
	}
	return eventArgs(ref, name, href, parent)
}

// eventArgs: the VM, host, compute resource and datacenter arguments of a
// VM event (the VM's own lock must not be held by the caller for a VM's
// parent chain lookup; host and folders are locked one at a time).
func eventArgs(ref types.ManagedObjectReference, name string, href, parent *types.ManagedObjectReference) types.VmEvent {
	ev := types.Event{Vm: &types.VmEventArgument{EntityEventArgument: types.EntityEventArgument{Name: name}, Vm: ref}}
	if href != nil {
		hname, hparent, _ := entityInfo(*href)
		ev.Host = &types.HostEventArgument{EntityEventArgument: types.EntityEventArgument{Name: hname}, Host: *href}
		if hparent != nil {
			crname, _, _ := entityInfo(*hparent)
			ev.ComputeResource = &types.ComputeResourceEventArgument{
				EntityEventArgument: types.EntityEventArgument{Name: crname}, ComputeResource: *hparent}
		}
	}
	for cur := parent; cur != nil; {
		if cur.Type == "Datacenter" {
			dcname, _, _ := entityInfo(*cur)
			ev.Datacenter = &types.DatacenterEventArgument{
				EntityEventArgument: types.EntityEventArgument{Name: dcname}, Datacenter: *cur}
			break
		}
		_, next, ok := entityInfo(*cur)
		if !ok {
			break
		}
		cur = next
	}
	return types.VmEvent{Event: ev}
}

func (p *peer) postEvent(ev types.BaseEvent) {
	em := p.client.ServiceContent.EventManager
	if em == nil {
		return
	}
	if _, err := methods.PostEvent(context.Background(), p.client, &types.PostEvent{This: *em, EventToPost: ev}); err != nil {
		log.Printf("post event: %v", err)
	}
}

// failedTask returns the reference of a task that has already failed with f,
// as vCenter does for power operations refused by a pre-check.
func failedTask(ref types.ManagedObjectReference, name string, f types.BaseMethodFault) types.ManagedObjectReference {
	return failedTaskMsg(ref, name, f, "")
}

// failedTaskMsg: failedTask with vCenter's own words as the error's
// localizedMessage (the simulator puts the Go type name there).
func failedTaskMsg(ref types.ManagedObjectReference, name string, f types.BaseMethodFault, msg string) types.ManagedObjectReference {
	task := simulator.CreateTask(ref, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, f
	})
	tref := task.Run()
	if msg != "" {
		simulator.Map.WithLock(task, func() {
			simulator.Map.Update(task, []types.PropertyChange{
				{Name: "info.error", Val: types.LocalizedMethodFault{Fault: f, LocalizedMessage: msg}},
			})
		})
	}
	return tref
}

// inProcess runs a power operation through the in-process client (the
// simulator's own implementation and locking) and returns its task.
type inProcess func(context.Context, types.ManagedObjectReference) (types.ManagedObjectReference, error)

// taskOutcome: the result and fault of a finished simulator task.
func taskOutcome(ref types.ManagedObjectReference) (types.AnyType, types.BaseMethodFault) {
	t, ok := simulator.Map.Get(ref).(*simulator.Task)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: ref}
	}
	var res types.AnyType
	var f types.BaseMethodFault
	simulator.Map.WithLock(t, func() {
		res = t.Info.Result
		if t.Info.Error != nil {
			f = t.Info.Error.Fault
		}
	})
	return res, f
}

// delayedTask is a power task that runs for d (POST /vm/{id}/task_delay):
// it is returned running, and when d is over it fails if vCenter lost the
// VM's host meanwhile (HostNotReachable when the host is notResponding,
// HostNotConnected when it is disconnected: the VM stays as it was), and a
// power-on fails if another host holds the VM's files; otherwise it runs the
// simulator's own operation.  With d never it stays running for ever.  seq
// is its line in the operations log.  The caller holds the VM's lock and has
// done the pre-checks.
func (p *peer) delayedTask(ref types.ManagedObjectReference, method, taskName string, d time.Duration, seq int, run inProcess) types.ManagedObjectReference {
	task := simulator.CreateTask(ref, taskName, nil)
	simulator.Map.WithLock(task, func() {
		simulator.Map.Update(task, []types.PropertyChange{
			{Name: "info.startTime", Val: time.Now()},
			{Name: "info.state", Val: types.TaskInfoStateRunning},
		})
	})
	p.mu.Lock()
	p.tasks[ref.Value] = method
	p.mu.Unlock()
	if d < 0 {
		return task.Self // a task that never finishes: runningTask names it for ever
	}
	go func() {
		time.Sleep(d)
		var res types.AnyType
		var fault types.BaseMethodFault
		msg := ""
		vm := getVM(ref.Value)
		if vm == nil {
			fault = &types.ManagedObjectNotFound{Obj: ref}
		} else {
			var href *types.ManagedObjectReference
			simulator.Map.WithLock(vm, func() {
				href = vm.Runtime.Host
				if method == "PowerOnVM_Task" {
					if _, locked := p.lockedElsewhere(vm); locked {
						fault, msg = p.lockFault(vm)
					}
				}
			})
			switch cs, _, _ := hostRefState(href); cs {
			case types.HostSystemConnectionStateNotResponding:
				fault, msg = &types.HostNotReachable{}, ""
			case types.HostSystemConnectionStateDisconnected:
				fault, msg = &types.HostNotConnected{}, ""
			}
		}
		if fault == nil {
			inner, err := run(context.Background(), ref)
			if err != nil {
				fault = &types.SystemError{Reason: err.Error()}
			} else {
				res, fault = taskOutcome(inner)
			}
		}
		var info interface{}
		state := types.TaskInfoStateSuccess
		if fault != nil {
			state = types.TaskInfoStateError
			if msg == "" {
				msg = fmt.Sprintf("%T", fault)
			}
			info = types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
		}
		simulator.Map.WithLock(task, func() {
			simulator.Map.Update(task, []types.PropertyChange{
				{Name: "info.completeTime", Val: time.Now()},
				{Name: "info.state", Val: state},
				{Name: "info.result", Val: res},
				{Name: "info.error", Val: info},
			})
		})
		p.finishOp(seq, fault)
		p.mu.Lock()
		delete(p.tasks, ref.Value)
		p.mu.Unlock()
	}()
	return task.Self
}

// powerTask is the common shape of the four power task hooks.  Every call
// is logged (GET /operations) with its outcome.
func (h *vmHook) powerTask(ctx *simulator.Context, method, taskName string, checkMaintenance bool,
	extra func(*simulator.VirtualMachine) (types.BaseMethodFault, string),
	native func(*simulator.VirtualMachine, types.ManagedObjectReference) soap.HasFault,
	later inProcess,
	wrap func(types.ManagedObjectReference) soap.HasFault, notFoundBody func(*soap.Fault) soap.HasFault) soap.HasFault {
	vm, ref := h.vm()
	if vm == nil {
		return notFoundBody(notFound(ref))
	}
	var res soap.HasFault
	seq := 0
	delayed := false
	simulator.Map.WithLock(vm, func() {
		seq = h.p.recordOp(method, vm)
		if disabled(vm, method) {
			res = notFoundBody(simulator.Fault("method is disabled", &types.MethodDisabled{}))
			return
		}
		f, msg := hostFault(vm, checkMaintenance), ""
		if f == nil && extra != nil {
			f, msg = extra(vm)
		}
		if f != nil {
			res = wrap(failedTaskMsg(ref, taskName, f, msg))
			return
		}
		if d := h.p.taskDelayFor(ref.Value); d != 0 {
			delayed = true
			res = wrap(h.p.delayedTask(ref, method, taskName, d, seq, later))
			return
		}
		res = delegate(ctx, ref, func() soap.HasFault { return native(vm, ref) })
	})
	if !delayed {
		h.p.finishTaskOp(seq, res)
	}
	return res
}

func (h *vmHook) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	// Another host holds the VM's files (it runs the VM, registered there or
	// no longer listed by vCenter): the ESXi host cannot open the disk.
	locked := func(vm *simulator.VirtualMachine) (types.BaseMethodFault, string) {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			return nil, "" // the simulator's InvalidPowerState
		}
		if _, ok := h.p.lockedElsewhere(vm); ok {
			return h.p.lockFault(vm)
		}
		return nil, ""
	}
	return h.powerTask(ctx, "PowerOnVM_Task", "powerOn", true, locked,
		func(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) soap.HasFault {
			r := *req
			r.This = ref
			return vm.PowerOnVMTask(ctx, &r)
		},
		func(c context.Context, ref types.ManagedObjectReference) (types.ManagedObjectReference, error) {
			r, err := methods.PowerOnVM_Task(c, h.p.client, &types.PowerOnVM_Task{This: ref})
			if err != nil {
				return types.ManagedObjectReference{}, err
			}
			return r.Returnval, nil
		},
		func(t types.ManagedObjectReference) soap.HasFault {
			return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: t}}
		},
		func(f *soap.Fault) soap.HasFault { return &methods.PowerOnVM_TaskBody{Fault_: f} })
}

func (h *vmHook) PowerOffVMTask(ctx *simulator.Context, req *types.PowerOffVM_Task) soap.HasFault {
	return h.powerTask(ctx, "PowerOffVM_Task", "powerOff", false, nil,
		func(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) soap.HasFault {
			return vm.PowerOffVMTask(ctx, &types.PowerOffVM_Task{This: ref})
		},
		func(c context.Context, ref types.ManagedObjectReference) (types.ManagedObjectReference, error) {
			r, err := methods.PowerOffVM_Task(c, h.p.client, &types.PowerOffVM_Task{This: ref})
			if err != nil {
				return types.ManagedObjectReference{}, err
			}
			return r.Returnval, nil
		},
		func(t types.ManagedObjectReference) soap.HasFault {
			return &methods.PowerOffVM_TaskBody{Res: &types.PowerOffVM_TaskResponse{Returnval: t}}
		},
		func(f *soap.Fault) soap.HasFault { return &methods.PowerOffVM_TaskBody{Fault_: f} })
}

func (h *vmHook) ResetVMTask(ctx *simulator.Context, req *types.ResetVM_Task) soap.HasFault {
	// govmomi 0.24 resets a suspended VM into poweredOn; vCenter refuses.
	onlyWhenOn := func(vm *simulator.VirtualMachine) (types.BaseMethodFault, string) {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStateSuspended {
			return &types.InvalidPowerState{
				RequestedState: types.VirtualMachinePowerStatePoweredOn,
				ExistingState:  vm.Runtime.PowerState,
			}, ""
		}
		return nil, ""
	}
	return h.powerTask(ctx, "ResetVM_Task", "reset", false, onlyWhenOn,
		func(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) soap.HasFault {
			return vm.ResetVMTask(ctx, &types.ResetVM_Task{This: ref})
		},
		func(c context.Context, ref types.ManagedObjectReference) (types.ManagedObjectReference, error) {
			r, err := methods.ResetVM_Task(c, h.p.client, &types.ResetVM_Task{This: ref})
			if err != nil {
				return types.ManagedObjectReference{}, err
			}
			return r.Returnval, nil
		},
		func(t types.ManagedObjectReference) soap.HasFault {
			return &methods.ResetVM_TaskBody{Res: &types.ResetVM_TaskResponse{Returnval: t}}
		},
		func(f *soap.Fault) soap.HasFault { return &methods.ResetVM_TaskBody{Fault_: f} })
}

func (h *vmHook) SuspendVMTask(ctx *simulator.Context, req *types.SuspendVM_Task) soap.HasFault {
	// govmomi 0.24 lets a powered-off VM be "suspended"; vCenter refuses.
	onlyWhenOn := func(vm *simulator.VirtualMachine) (types.BaseMethodFault, string) {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOff {
			return &types.InvalidPowerState{
				RequestedState: types.VirtualMachinePowerStatePoweredOn,
				ExistingState:  vm.Runtime.PowerState,
			}, ""
		}
		return nil, ""
	}
	return h.powerTask(ctx, "SuspendVM_Task", "suspend", false, onlyWhenOn,
		func(vm *simulator.VirtualMachine, ref types.ManagedObjectReference) soap.HasFault {
			return vm.SuspendVMTask(ctx, &types.SuspendVM_Task{This: ref})
		},
		func(c context.Context, ref types.ManagedObjectReference) (types.ManagedObjectReference, error) {
			r, err := methods.SuspendVM_Task(c, h.p.client, &types.SuspendVM_Task{This: ref})
			if err != nil {
				return types.ManagedObjectReference{}, err
			}
			return r.Returnval, nil
		},
		func(t types.ManagedObjectReference) soap.HasFault {
			return &methods.SuspendVM_TaskBody{Res: &types.SuspendVM_TaskResponse{Returnval: t}}
		},
		func(f *soap.Fault) soap.HasFault { return &methods.SuspendVM_TaskBody{Fault_: f} })
}

// ---------------------------------------------------------------------------
// RelocateVM_Task (vMotion).  govmomi 0.24 sets runtime.host and resourcePool,
// but it removes the target's own reference from the target host's, pool's
// and datastore's vm lists (a no-op), never removes the VM from the source
// lists and never adds it to the target ones; it also panics on a spec
// reference of the wrong type.  The hook checks the spec and the hosts as
// vCenter does, then moves the VM with the peer's own bookkeeping (moveVM).

func (h *vmHook) RelocateVMTask(ctx *simulator.Context, req *types.RelocateVM_Task) soap.HasFault {
	body := &methods.RelocateVM_TaskBody{}
	vm, ref := h.vm()
	if vm == nil {
		body.Fault_ = notFound(ref)
		return body
	}
	spec := req.Spec
	// A reference to nothing is a fault of the call itself.
	for _, r := range []*types.ManagedObjectReference{spec.Host, spec.Pool, spec.Datastore, spec.Folder} {
		if r != nil && simulator.Map.Get(*r) == nil {
			body.Fault_ = notFound(*r)
			return body
		}
	}
	var dis bool
	var srcHost, srcPool *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		dis = disabled(vm, "RelocateVM_Task")
		srcHost, srcPool = copyRef(vm.Runtime.Host), copyRef(vm.ResourcePool)
	})
	if dis {
		body.Fault_ = simulator.Fault("method is disabled", &types.MethodDisabled{})
		return body
	}
	reply := func(task types.ManagedObjectReference) soap.HasFault {
		body.Res = &types.RelocateVM_TaskResponse{Returnval: task}
		return body
	}

	f := refTypeFault(spec.Datastore, "Datastore", "spec.datastore")
	if f == nil {
		f = refTypeFault(spec.Folder, "Folder", "spec.folder")
	}
	var target, pool types.ManagedObjectReference
	if f == nil {
		target, pool, f = relocationTarget(srcHost, srcPool, spec.Host, spec.Pool)
	}
	if f == nil {
		f = hostRefFault(srcHost, false) // the VM's own host must be reachable
	}
	if f == nil {
		f = hostRefFault(&target, true)
	}
	if f != nil {
		return reply(failedTask(ref, "relocateVm", f))
	}

	task := simulator.CreateTask(vm, "relocateVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		h.p.moveVM(vm, target, pool)
		if spec.Datastore != nil {
			h.p.moveDatastore(vm, *spec.Datastore)
		}
		if spec.Folder != nil {
			t, err := object.NewFolder(h.p.client, *spec.Folder).MoveInto(context.Background(), []types.ManagedObjectReference{ref})
			if err == nil {
				err = t.Wait(context.Background())
			}
			if err != nil {
				return nil, &types.InvalidArgument{InvalidProperty: "spec.folder"}
			}
		}
		return nil, nil
	})
	return reply(task.Run())
}

func copyRef(r *types.ManagedObjectReference) *types.ManagedObjectReference {
	if r == nil {
		return nil
	}
	c := *r
	return &c
}

// refTypeFault: InvalidArgument when ref is set but is not a kind object.
func refTypeFault(ref *types.ManagedObjectReference, kind, property string) types.BaseMethodFault {
	if ref != nil && ref.Type != kind {
		return &types.InvalidArgument{InvalidProperty: property}
	}
	return nil
}

// hostCR returns the compute resource (cluster or standalone) of a host.
func hostCR(href types.ManagedObjectReference) types.ManagedObjectReference {
	_, parent, ok := entityInfo(href)
	if !ok || parent == nil {
		return href
	}
	return *parent
}

// crInfo returns a compute resource's root pool and hosts.
func crInfo(cr types.ManagedObjectReference) (*types.ManagedObjectReference, []types.ManagedObjectReference) {
	var pool *types.ManagedObjectReference
	var hosts []types.ManagedObjectReference
	switch c := simulator.Map.Get(cr).(type) {
	case *simulator.ClusterComputeResource:
		simulator.Map.WithLock(c, func() { pool, hosts = copyRef(c.ResourcePool), append(hosts, c.Host...) })
	case *mo.ComputeResource:
		simulator.Map.WithLock(c, func() { pool, hosts = copyRef(c.ResourcePool), append(hosts, c.Host...) })
	}
	return pool, hosts
}

// relocationTarget works out the host and pool a VM on srcHost/srcPool ends
// up on for a RelocateSpec with the given host and pool (either may be nil),
// as vCenter does: the pool must belong to the host's compute resource; with
// no pool the VM keeps its pool within a compute resource and goes to the
// target's root pool across them; with only a pool in another compute
// resource a connected host of it is picked, as DRS would.
func relocationTarget(srcHost, srcPool, host, pool *types.ManagedObjectReference) (types.ManagedObjectReference, types.ManagedObjectReference, types.BaseMethodFault) {
	var none types.ManagedObjectReference
	if f := refTypeFault(host, "HostSystem", "spec.host"); f != nil {
		return none, none, f
	}
	if f := refTypeFault(pool, "ResourcePool", "spec.pool"); f != nil {
		return none, none, f
	}
	var target types.ManagedObjectReference
	switch {
	case host != nil:
		target = *host
	case pool != nil && (srcHost == nil || poolOwner(*pool) != hostCR(*srcHost)):
		_, hosts := crInfo(poolOwner(*pool))
		var names []string
		byName := map[string]types.ManagedObjectReference{}
		for _, h := range hosts {
			if hostRefFault(&h, true) == nil {
				name, _, _ := entityInfo(h)
				names = append(names, name)
				byName[name] = h
			}
		}
		if len(names) == 0 {
			return none, none, &types.InvalidArgument{InvalidProperty: "spec.host"}
		}
		sort.Strings(names)
		target = byName[names[0]]
	case srcHost != nil:
		target = *srcHost
	default:
		return none, none, &types.InvalidArgument{InvalidProperty: "spec.host"}
	}
	cr := hostCR(target)
	switch {
	case pool != nil:
		if poolOwner(*pool) != cr {
			return none, none, &types.InvalidArgument{InvalidProperty: "spec.pool"}
		}
		return target, *pool, nil
	case srcPool != nil && poolOwner(*srcPool) == cr:
		return target, *srcPool, nil
	}
	root, _ := crInfo(cr)
	if root == nil {
		return none, none, &types.InvalidArgument{InvalidProperty: "spec.pool"}
	}
	return target, *root, nil
}

// moveVM puts the VM on host href in pool (both already checked): it sets
// runtime.host, summary.runtime.host, resourcePool and the VM's connection
// state (that of its new host), and fixes the vm lists of the old and new
// hosts and pools.  Relocations are serialised, so the lists stay consistent
// when SOAP and control API relocations race.
func (p *peer) moveVM(vm *simulator.VirtualMachine, href, pool types.ManagedObjectReference) {
	p.relocMu.Lock()
	defer p.relocMu.Unlock()
	vmcs := types.VirtualMachineConnectionStateConnected
	if cs, _, _ := hostRefState(&href); cs != "" && cs != types.HostSystemConnectionStateConnected {
		vmcs = types.VirtualMachineConnectionStateDisconnected
	}
	var oldHost, oldPool *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		oldHost, oldPool = copyRef(vm.Runtime.Host), copyRef(vm.ResourcePool)
		var changes []types.PropertyChange
		if oldHost == nil || *oldHost != href {
			changes = append(changes,
				types.PropertyChange{Name: "runtime.host", Val: href},
				types.PropertyChange{Name: "summary.runtime.host", Val: href})
		}
		if oldPool == nil || *oldPool != pool {
			changes = append(changes, types.PropertyChange{Name: "resourcePool", Val: pool})
		}
		if vm.Runtime.ConnectionState != vmcs {
			changes = append(changes,
				types.PropertyChange{Name: "runtime.connectionState", Val: vmcs},
				types.PropertyChange{Name: "summary.runtime.connectionState", Val: vmcs})
		}
		if len(changes) > 0 {
			simulator.Map.Update(vm, changes)
		}
	})
	self := vm.Self
	// A running VM's files are held by the host that runs it: vMotion hands them over.
	p.mu.Lock()
	for path, l := range p.locks {
		if l.vm == self.Value {
			p.locks[path] = fileLock{host: href.Value, vm: l.vm}
		}
	}
	p.mu.Unlock()
	if oldHost != nil && *oldHost != href {
		vmListRemove(*oldHost, self)
	}
	vmListAdd(href, self)
	if oldPool != nil && *oldPool != pool {
		vmListRemove(*oldPool, self)
	}
	vmListAdd(pool, self)
}

// moveDatastore sets the VM's datastore list to ds and fixes the datastores'
// vm lists.  The VM's files stay where they are.
func (p *peer) moveDatastore(vm *simulator.VirtualMachine, ds types.ManagedObjectReference) {
	var old []types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		old = append(old, vm.Datastore...)
		if len(old) != 1 || old[0] != ds {
			simulator.Map.Update(vm, []types.PropertyChange{{Name: "datastore", Val: []types.ManagedObjectReference{ds}}})
		}
	})
	for _, o := range old {
		if o != ds {
			vmListRemove(o, vm.Self)
		}
	}
	vmListAdd(ds, vm.Self)
}

// vmListRef returns the vm list of a host, pool or datastore (caller holds its lock).
func vmListOf(obj mo.Reference) ([]types.ManagedObjectReference, bool) {
	switch o := obj.(type) {
	case *simulator.HostSystem:
		return o.Vm, true
	case *simulator.ResourcePool:
		return o.Vm, true
	case *simulator.Datastore:
		return o.Vm, true
	}
	return nil, false
}

func vmListAdd(owner, vm types.ManagedObjectReference) {
	obj := simulator.Map.Get(owner)
	if obj == nil {
		return
	}
	simulator.Map.WithLock(obj, func() {
		list, ok := vmListOf(obj)
		if !ok {
			return
		}
		for _, r := range list {
			if r == vm {
				return
			}
		}
		simulator.Map.Update(obj, []types.PropertyChange{{Name: "vm", Val: append(append([]types.ManagedObjectReference{}, list...), vm)}})
	})
}

func vmListRemove(owner, vm types.ManagedObjectReference) {
	obj := simulator.Map.Get(owner)
	if obj == nil {
		return
	}
	simulator.Map.WithLock(obj, func() {
		list, ok := vmListOf(obj)
		if !ok {
			return
		}
		if out := without(list, vm); len(out) != len(list) {
			simulator.Map.Update(obj, []types.PropertyChange{{Name: "vm", Val: out}})
		}
	})
}

// ---------------------------------------------------------------------------
// UnregisterVM and RegisterVM_Task (host-failure recovery: remove the VMs of
// a dead host from the inventory, register their .vmx files on a live host).
//
// vCenter lets a VM whose host is disconnected or not responding be removed
// from the inventory whatever its last known power state; the simulator
// refuses any powered-on VM.  Re-registering a .vmx brings back what the file
// carries (name, config.uuid, config.instanceUuid); the simulator has no .vmx
// contents and derives both UUIDs from the path, so the peer remembers them
// at unregister time, by path, and puts them back on registration.

func (h *vmHook) UnregisterVM(ctx *simulator.Context, req *types.UnregisterVM) soap.HasFault {
	body := &methods.UnregisterVMBody{}
	_, ref := h.vm()
	// Serialised with relocations and registrations (vm-list bookkeeping)
	// and with readers (see peer.creating).
	h.p.creating.Lock()
	defer h.p.creating.Unlock()
	h.p.relocMu.Lock()
	defer h.p.relocMu.Unlock()
	vm := getVM(ref.Value)
	if vm == nil {
		body.Fault_ = notFound(ref)
		return body
	}
	var res soap.HasFault
	var vmx string
	var ident vmIdentity
	var host *types.ManagedObjectReference
	var boot *time.Time
	cutOff, wasOn := false, false
	seq := 0
	simulator.Map.WithLock(vm, func() {
		seq = h.p.recordOp("UnregisterVM", vm)
		if disabled(vm, "UnregisterVM") {
			body.Fault_ = simulator.Fault("method is disabled", &types.MethodDisabled{})
			res = body
			return
		}
		ident.name = vm.Name
		if vm.Config != nil {
			vmx = vm.Config.Files.VmPathName
			ident.uuid, ident.instanceUUID = vm.Config.Uuid, vm.Config.InstanceUuid
		}
		host, boot = copyRef(vm.Runtime.Host), vm.Runtime.BootTime
		if d := diskPath(vm); vmx != "" && d != vmx {
			h.p.mu.Lock()
			h.p.disks[vmx] = d
			h.p.mu.Unlock()
		}
		// The simulator only looks at runtime.powerState.  For a VM on a host
		// vCenter cannot reach, that is a last known state, and vCenter
		// removes the VM anyway: let the simulator see it powered off.  The
		// object leaves the registry, so nobody sees the change (it is
		// undone if the simulator refuses all the same).
		saved := vm.Runtime.PowerState
		wasOn = saved == types.VirtualMachinePowerStatePoweredOn
		if cutOff = hostFault(vm, false) != nil; cutOff {
			vm.Runtime.PowerState = types.VirtualMachinePowerStatePoweredOff
		}
		res = delegate(ctx, ref, func() soap.HasFault {
			return vm.UnregisterVM(ctx, &types.UnregisterVM{This: ref})
		})
		vm.Runtime.PowerState = saved
	})
	h.p.finishTaskOp(seq, res)
	if res.Fault() != nil {
		return res
	}
	f := h.p.vmFlags(ref.Value)
	ident.flags = &f
	h.p.mu.Lock()
	delete(h.p.flags, ref.Value)
	delete(h.p.toolsPending, ref.Value)
	if vmx != "" {
		h.p.unregistered[vmx] = ident
	}
	// vCenter only forgets the VM.  A host it cannot reach still has it
	// registered and, unless the host went down, still runs it and holds
	// its files; vCenter takes it back when the host connects again.
	running := false
	if cutOff && host != nil && vmx != "" {
		s, diverged := h.p.truth[ref.Value]
		running = (diverged && s == types.VirtualMachinePowerStatePoweredOn) || (!diverged && wasOn)
		h.p.orphans[host.Value] = append(h.p.orphans[host.Value], orphanVM{path: vmx, ident: ident, running: running, bootTime: boot})
	}
	if l, ok := h.p.locks[vmx]; ok && l.vm == ref.Value {
		if running {
			h.p.locks[vmx] = fileLock{host: l.host}
		} else {
			delete(h.p.locks, vmx)
		}
	}
	delete(h.p.truth, ref.Value)
	h.p.mu.Unlock()
	// The hook object stays: a call already routed to it answers
	// ManagedObjectNotFound for the VM, and later calls are not routed.
	return res
}

// folderHook: RegisterVM_Task on a Folder.
type folderHook struct {
	Self types.ManagedObjectReference
	p    *peer
}

func (h *folderHook) Reference() types.ManagedObjectReference { return h.Self }

func (h *folderHook) RegisterVMTask(ctx *simulator.Context, req *types.RegisterVM_Task) soap.HasFault {
	body := &methods.RegisterVM_TaskBody{}
	ref := types.ManagedObjectReference{Type: "Folder", Value: h.Self.Value}
	folder, ok := simulator.Map.Get(ref).(*simulator.Folder)
	if !ok {
		body.Fault_ = notFound(ref)
		return body
	}
	// A reference to nothing is a fault of the call itself (the simulator
	// would panic on it).
	for _, r := range []*types.ManagedObjectReference{req.Host, req.Pool} {
		if r != nil && simulator.Map.Get(*r) == nil {
			body.Fault_ = notFound(*r)
			return body
		}
	}
	reply := func(task types.ManagedObjectReference) soap.HasFault {
		body.Res = &types.RegisterVM_TaskResponse{Returnval: task}
		return body
	}
	h.p.creating.Lock()
	defer h.p.creating.Unlock()
	h.p.relocMu.Lock()
	defer h.p.relocMu.Unlock()

	op := opRecord{Op: "RegisterVM_Task", Path: req.Path, Name: req.Name, Result: "running"}
	if req.Host != nil {
		op.Host = req.Host.Value
	}
	seq := h.p.addOp(op)
	var res soap.HasFault
	var newVM *simulator.VirtualMachine
	defer func() {
		if newVM == nil {
			h.p.finishTaskOp(seq, res)
			return
		}
		simulator.Map.WithLock(newVM, func() {
			h.p.finishOpWith(seq, func(r *opRecord) {
				r.Result, r.VM, r.Name = "success", newVM.Self.Value, newVM.Name
				r.InstanceUUID = newVM.Config.InstanceUuid
				if newVM.Runtime.Host != nil {
					r.Host = newVM.Runtime.Host.Value
				}
			})
		})
	}()
	simulator.Map.WithLock(folder, func() {
		if disabledMethod(folder.DisabledMethod, "RegisterVM_Task") {
			body.Fault_ = simulator.Fault("method is disabled", &types.MethodDisabled{})
			res = body
			return
		}
		r := *req
		ident, known := h.p.identityFor(r.Path)
		if f := h.p.registerCheck(folder, &r, ident, known); f != nil {
			res = reply(failedTask(ref, "registerVm", f))
			return
		}
		res = delegate(ctx, ref, func() soap.HasFault { return folder.RegisterVMTask(ctx, &r) })
		b, ok := res.(*methods.RegisterVM_TaskBody)
		if !ok || b.Res == nil {
			return
		}
		task, ok := simulator.Map.Get(b.Res.Returnval).(*simulator.Task)
		if !ok || task.Info.State != types.TaskInfoStateSuccess {
			return
		}
		if vmRef, ok := task.Info.Result.(types.ManagedObjectReference); ok {
			if vm := getVM(vmRef.Value); vm != nil {
				h.p.registered(vm, r.Path, r.AsTemplate, ident, known)
				newVM = vm
			}
		}
	})
	return res
}

func disabledMethod(list []string, name string) bool {
	for _, m := range list {
		if m == name {
			return true
		}
	}
	return false
}

func (p *peer) identityFor(vmx string) (vmIdentity, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ident, ok := p.unregistered[vmx]
	return ident, ok
}

// registerCheck checks a RegisterVM_Task request as vCenter does and fills
// in what it leaves out (host, name), so that the simulator's own
// registration (which picks a random host when none is given) does the rest.
// The caller holds the folder's lock.
func (p *peer) registerCheck(folder *simulator.Folder, r *types.RegisterVM_Task, ident vmIdentity, known bool) types.BaseMethodFault {
	if !folderHasChildType(folder, "VirtualMachine") {
		return &types.NotSupported{}
	}
	if f := refTypeFault(r.Host, "HostSystem", "host"); f != nil {
		return f
	}
	if r.Pool != nil && r.Pool.Type != "ResourcePool" && r.Pool.Type != "VirtualApp" {
		return &types.InvalidArgument{InvalidProperty: "pool"}
	}
	if r.Path == "" {
		return &types.InvalidArgument{InvalidProperty: "path"}
	}
	if r.AsTemplate {
		// The simulator wants a host and no pool (the template goes into
		// the host's root pool), as vCenter does.
		if r.Host == nil {
			return &types.InvalidArgument{InvalidProperty: "host"}
		}
		if r.Pool != nil {
			return &types.InvalidArgument{InvalidProperty: "pool"}
		}
	} else {
		if r.Pool == nil {
			return &types.InvalidArgument{InvalidProperty: "pool"}
		}
		cr := poolOwner(*r.Pool)
		if r.Host == nil {
			// vCenter picks a host for a standalone host or a DRS cluster;
			// the simulator would pick a random one.  The peer picks the
			// first connected host by name, not in maintenance mode if it can.
			h, f := pickHost(cr)
			if f != nil {
				return f
			}
			r.Host = &h
		} else if hostCR(*r.Host) != cr {
			return &types.InvalidArgument{InvalidProperty: "host"}
		}
	}
	if other := vmByPath(r.Path); other != nil {
		return &types.AlreadyExists{Name: other.Value} // as the simulator answers
	}
	if r.Name == "" {
		// vCenter uses the displayName from the .vmx; the simulator the
		// name of the VM's directory.
		if known && ident.name != "" {
			r.Name = ident.name
		} else {
			var dp object.DatastorePath
			if dp.FromString(r.Path) {
				r.Name = path.Dir(dp.Path)
			}
		}
	}
	if r.Name != "" {
		for _, c := range folder.ChildEntity {
			if c.Type != "VirtualMachine" && c.Type != "VirtualApp" {
				continue
			}
			if name, _, _ := entityInfo(c); name == r.Name {
				return &types.DuplicateName{Name: r.Name, Object: c}
			}
		}
	}
	return hostRefFault(r.Host, false)
}

func folderHasChildType(f *simulator.Folder, kind string) bool {
	for _, t := range f.ChildType {
		if t == kind {
			return true
		}
	}
	return false
}

// pickHost: the first host of a compute resource by name that is connected
// and not in maintenance mode, else the first connected one.
func pickHost(cr types.ManagedObjectReference) (types.ManagedObjectReference, types.BaseMethodFault) {
	_, hosts := crInfo(cr)
	if len(hosts) == 0 {
		return types.ManagedObjectReference{}, &types.InvalidArgument{InvalidProperty: "host"}
	}
	names := map[types.ManagedObjectReference]string{}
	for _, h := range hosts {
		names[h], _, _ = entityInfo(h)
	}
	sort.Slice(hosts, func(i, j int) bool { return names[hosts[i]] < names[hosts[j]] })
	for _, checkMaintenance := range []bool{true, false} {
		for _, h := range hosts {
			if hostRefFault(&h, checkMaintenance) == nil {
				return h, nil
			}
		}
	}
	return types.ManagedObjectReference{}, hostRefFault(&hosts[0], false)
}

// vmByPath returns the VM registered with that .vmx path, if any.
func vmByPath(vmx string) *types.ManagedObjectReference {
	for _, vm := range allVMs() {
		var p string
		simulator.Map.WithLock(vm, func() {
			if vm.Config != nil {
				p = vm.Config.Files.VmPathName
			}
		})
		if p == vmx {
			r := vm.Self
			return &r
		}
	}
	return nil
}

// registered gives a newly registered VM what its .vmx carries (see
// vmIdentity) and the peer's guest state.  vCenter keeps the instance UUID
// unless another VM already has it; it then assigns a new one.
func (p *peer) registered(vm *simulator.VirtualMachine, vmx string, template bool, ident vmIdentity, known bool) {
	id := vm.Self.Value
	var changes []types.PropertyChange
	if known {
		p.mu.Lock()
		delete(p.unregistered, vmx)
		if ident.flags != nil {
			f := *ident.flags
			f.hung = false // registered powered off: its guest boots afresh
			p.flags[id] = &f
		}
		p.mu.Unlock()
		if ident.uuid != "" {
			changes = append(changes,
				types.PropertyChange{Name: "config.uuid", Val: ident.uuid},
				types.PropertyChange{Name: "summary.config.uuid", Val: ident.uuid})
		}
		iu := ident.instanceUUID
		if iu != "" {
			if refs, _ := findAllByUUID(nil, iu, true, types.NewBool(true)); len(without(refs, vm.Self)) > 0 {
				iu = randomUUID()
			}
		}
		if iu != "" { // nothing remembered: the simulator's stays
			changes = append(changes,
				types.PropertyChange{Name: "config.instanceUuid", Val: iu},
				types.PropertyChange{Name: "summary.config.instanceUuid", Val: iu})
		}
	}
	if template {
		changes = append(changes,
			types.PropertyChange{Name: "config.template", Val: true},
			types.PropertyChange{Name: "summary.config.template", Val: true})
	}
	if f := p.vmFlags(id); p.toolsDefault || f.tools != nil {
		changes = append(changes, guestChanges(types.VirtualMachinePowerStatePoweredOff, p.toolsWanted(id))...)
	}
	if len(changes) == 0 {
		return
	}
	simulator.Map.WithLock(vm, func() { simulator.Map.Update(vm, changes) })
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// ---------------------------------------------------------------------------
// searchHook: SearchIndex.FindByUuid and FindAllByUuid (the latter is missing
// from govmomi 0.24).  Unlike the simulator's FindByUuid, the datacenter
// argument limits the search, as on vCenter.  Among several matches
// FindByUuid answers any one, picked at random on every call, and
// FindAllByUuid lists them in a random order: vSphere promises no order, so
// a client must not depend on one.  UUIDs are compared exactly, as the
// simulator does.

func (p *peer) intn(n int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rng.Intn(n)
}

func (p *peer) shuffle(refs []types.ManagedObjectReference) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rng.Shuffle(len(refs), func(i, j int) { refs[i], refs[j] = refs[j], refs[i] })
}

type searchHook struct {
	Self types.ManagedObjectReference
	p    *peer
}

func (s *searchHook) Reference() types.ManagedObjectReference { return s.Self }

func (s *searchHook) FindByUuid(req *types.FindByUuid) soap.HasFault {
	s.p.creating.RLock()
	defer s.p.creating.RUnlock()
	body := &methods.FindByUuidBody{}
	refs, f := findAllByUUID(req.Datacenter, req.Uuid, req.VmSearch, req.InstanceUuid)
	if f != nil {
		body.Fault_ = f
		return body
	}
	body.Res = &types.FindByUuidResponse{}
	if len(refs) > 0 {
		// vSphere returns one of the matches and promises no order (the
		// simulator returns whichever its map walk meets first): any one.
		body.Res.Returnval = &refs[s.p.intn(len(refs))]
	}
	return body
}

func (s *searchHook) FindAllByUuid(req *types.FindAllByUuid) soap.HasFault {
	s.p.creating.RLock()
	defer s.p.creating.RUnlock()
	body := &methods.FindAllByUuidBody{}
	refs, f := findAllByUUID(req.Datacenter, req.Uuid, req.VmSearch, req.InstanceUuid)
	if f != nil {
		body.Fault_ = f
		return body
	}
	s.p.shuffle(refs) // "all matching entities", in no promised order
	body.Res = &types.FindAllByUuidResponse{Returnval: refs}
	return body
}

func findAllByUUID(dc *types.ManagedObjectReference, uuid string, vmSearch bool, instance *bool) ([]types.ManagedObjectReference, *soap.Fault) {
	if dc != nil {
		obj := simulator.Map.Get(*dc)
		if obj == nil {
			return nil, notFound(*dc)
		}
		if _, ok := obj.(*simulator.Datacenter); !ok {
			return nil, simulator.Fault("datacenter is not a Datacenter", &types.InvalidArgument{InvalidProperty: "datacenter"})
		}
	}
	var out []types.ManagedObjectReference
	if uuid == "" {
		return out, nil
	}
	if vmSearch {
		byInstance := instance != nil && *instance
		for _, vm := range allVMs() {
			var u string
			simulator.Map.WithLock(vm, func() {
				if vm.Config != nil {
					u = vm.Config.Uuid
					if byInstance {
						u = vm.Config.InstanceUuid
					}
				}
			})
			if u == uuid {
				out = append(out, vm.Self)
			}
		}
	} else {
		for _, h := range allHosts() {
			var u string
			simulator.Map.WithLock(h, func() {
				if h.Summary.Hardware != nil {
					u = h.Summary.Hardware.Uuid
				}
				if u == "" && h.Hardware != nil {
					u = h.Hardware.SystemInfo.Uuid
				}
			})
			if u == uuid {
				out = append(out, h.Self)
			}
		}
	}
	if dc != nil {
		kept := out[:0]
		for _, r := range out {
			if d := datacenterOf(r); d != nil && *d == *dc {
				kept = append(kept, r)
			}
		}
		out = kept
	}
	sort.Slice(out, func(i, j int) bool { return morefLess(out[i].Value, out[j].Value) })
	return out, nil
}

// morefLess orders "vm-9" before "vm-10".
func morefLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func datacenterOf(ref types.ManagedObjectReference) *types.ManagedObjectReference {
	cur := ref
	for i := 0; i < 64; i++ {
		_, parent, ok := entityInfo(cur)
		if !ok || parent == nil {
			return nil
		}
		if parent.Type == "Datacenter" {
			return parent
		}
		cur = *parent
	}
	return nil
}

// ---------------------------------------------------------------------------
// eventHook: EventManager.QueryEvents.  vSphere answers with the latest
// events that match the filter (an event history collector's latest page:
// "the oldest events are removed ... to keep the size of the page").
// govmomi 0.24 fills the page walking its event ring the wrong way: it
// returns the newest matching event and then the oldest ones.  The hook
// collects every matching event through the simulator's own collector (one
// of the ring's size, which it walks whole), and answers the newest
// maxCount of them (1000 when unset), newest first.

type eventHook struct {
	Self types.ManagedObjectReference
	p    *peer
}

func (e *eventHook) Reference() types.ManagedObjectReference { return e.Self }

const eventRingSize = 1000 // the simulator's maxPageSize

func (e *eventHook) QueryEvents(req *types.QueryEvents) soap.HasFault {
	body := &methods.QueryEventsBody{}
	ctx := context.Background()
	em := types.ManagedObjectReference{Type: "EventManager", Value: e.Self.Value}
	want := int(req.Filter.MaxCount)
	if want < 0 || want > eventRingSize {
		body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "maxCount"})
		return body
	}
	if want == 0 {
		want = eventRingSize
	}
	filter := req.Filter
	filter.MaxCount = eventRingSize
	res, err := methods.CreateCollectorForEvents(ctx, e.p.client, &types.CreateCollectorForEvents{This: em, Filter: filter})
	if err != nil {
		body.Fault_ = simulator.Fault(err.Error(), &types.SystemError{Reason: err.Error()})
		return body
	}
	var c mo.EventHistoryCollector
	err = property.DefaultCollector(e.p.client).RetrieveOne(ctx, res.Returnval, []string{"latestPage"}, &c)
	_, _ = methods.DestroyCollector(ctx, e.p.client, &types.DestroyCollector{This: res.Returnval})
	if err != nil {
		body.Fault_ = simulator.Fault(err.Error(), &types.SystemError{Reason: err.Error()})
		return body
	}
	events := c.LatestPage
	sort.Slice(events, func(i, j int) bool { return events[i].GetEvent().Key > events[j].GetEvent().Key })
	if len(events) > want {
		events = events[:want]
	}
	body.Res = &types.QueryEventsResponse{Returnval: events}
	return body
}

// ---------------------------------------------------------------------------
// request routing to the hooks

type hookRoute struct {
	from *regexp.Regexp // the _this type attribute the method is issued on
	to   string         // hook type
	// per: the real object type when there is one hook per object (Value =
	// the object's moref, created on first use); "" for a singleton hook.
	per string
}

func typeAttr(kind string) *regexp.Regexp {
	return regexp.MustCompile(`\btype\s*=\s*(["'])` + regexp.QuoteMeta(kind) + `(["'])`)
}

var (
	vmRoute     = &hookRoute{from: typeAttr("VirtualMachine"), to: hookType, per: "VirtualMachine"}
	folderRoute = &hookRoute{from: typeAttr("Folder"), to: folderHookType, per: "Folder"}
	searchRoute = &hookRoute{from: typeAttr("SearchIndex"), to: searchHookType}
	eventRoute  = &hookRoute{from: typeAttr("EventManager"), to: eventHookType}

	hookedMethods = map[string]*hookRoute{
		"ShutdownGuest":   vmRoute,
		"RebootGuest":     vmRoute,
		"PowerOnVM_Task":  vmRoute,
		"PowerOffVM_Task": vmRoute,
		"ResetVM_Task":    vmRoute,
		"SuspendVM_Task":  vmRoute,
		"RelocateVM_Task": vmRoute,
		"UnregisterVM":    vmRoute,
		"RegisterVM_Task": folderRoute,
		"FindByUuid":      searchRoute,
		"FindAllByUuid":   searchRoute,
		"QueryEvents":     eventRoute,
	}
)

// ensureHook creates the per-object hook for the object id of route.per if
// that object exists; false when it does not (the simulator then answers
// ManagedObjectNotFound itself).
func (p *peer) ensureHook(route *hookRoute, id string) bool {
	switch route.per {
	case "VirtualMachine":
		if getVM(id) == nil {
			return false
		}
	case "Folder":
		if _, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "Folder", Value: id}).(*simulator.Folder); !ok {
			return false
		}
	}
	ref := types.ManagedObjectReference{Type: route.to, Value: id}
	if p.hooks.Get(ref) == nil {
		switch route.to {
		case hookType:
			p.hooks.Put(&vmHook{Self: ref, p: p})
		case folderHookType:
			p.hooks.Put(&folderHook{Self: ref, p: p})
		}
	}
	return true
}

var (
	reMethod = regexp.MustCompile(`<(?:[\w.-]+:)?Body\b[^>]*>\s*<(?:[\w.-]+:)?([A-Za-z_]+)\b`)
	reThis   = regexp.MustCompile(`<_this\b([^>]*)>\s*([^<\s]+)\s*</_this>`)
)

// rewrite re-targets hooked methods to their hook object (by changing the
// type of _this); hooked reports whether it did, and the request must then
// go to hookPath.
func (p *peer) rewrite(body []byte) (out []byte, hooked bool) {
	m := reMethod.FindSubmatch(body)
	if m == nil {
		return body, false
	}
	route := hookedMethods[string(m[1])]
	if route == nil {
		return body, false
	}
	loc := reThis.FindSubmatchIndex(body)
	if loc == nil {
		return body, false
	}
	attrs := body[loc[2]:loc[3]]
	if !route.from.Match(attrs) {
		return body, false
	}
	id := string(body[loc[4]:loc[5]])
	if route.per != "" {
		if !p.ensureHook(route, id) {
			return body, false // let the simulator report ManagedObjectNotFound
		}
	} else if p.hooks.Get(types.ManagedObjectReference{Type: route.to, Value: id}) == nil {
		return body, false
	}
	newAttrs := route.from.ReplaceAll(attrs, []byte("type=${1}"+route.to+"${2}"))
	out = make([]byte, 0, len(body)+16)
	out = append(out, body[:loc[2]]...)
	out = append(out, newAttrs...)
	out = append(out, body[loc[3]:]...)
	return out, true
}

func (p *peer) soapHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			var err error
			body, err = ioutil.ReadAll(r.Body)
			_ = r.Body.Close()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		// After the body is read, so that net/http notices a client that gives up
		// (r.Context is cancelled) and its call is dropped, not run when the freeze ends.
		if !p.freeze.wait(r.Context()) {
			return
		}
		if body != nil {
			if m := reMethod.FindSubmatch(body); m != nil && readCalls[string(m[1])] {
				// see peer.creating (in-process calls do not come this way,
				// so the read lock is never taken twice by one goroutine)
				p.creating.RLock()
				defer p.creating.RUnlock()
			}
			var hooked bool
			if body, hooked = p.rewrite(body); hooked {
				u := *r.URL
				u.Path, u.RawPath = hookPath, ""
				r.URL = &u
			}
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		next.ServeHTTP(w, r)
	})
}

// readCalls are the short SOAP calls that read VMs or walk the inventory:
// they wait while a VM enters or leaves the registry (see peer.creating).
// WaitForUpdatesEx, which may block for long, is not among them.
var readCalls = map[string]bool{
	"RetrieveProperties":           true,
	"RetrievePropertiesEx":         true,
	"ContinueRetrievePropertiesEx": true,
	"Fetch":                        true,
	"CreateContainerView":          true,
	"FindByDatastorePath":          true,
	"FindByInventoryPath":          true,
	"FindByDnsName":                true,
	"FindAllByDnsName":             true,
	"FindByIp":                     true,
	"FindAllByIp":                  true,
}

// ---------------------------------------------------------------------------
// inventory read helpers (each object read under its own lock)

func entityInfo(ref types.ManagedObjectReference) (name string, parent *types.ManagedObjectReference, ok bool) {
	obj := simulator.Map.Get(ref)
	e, isEntity := obj.(mo.Entity)
	if !isEntity {
		return "", nil, false
	}
	simulator.Map.WithLock(obj, func() {
		me := e.Entity()
		name = me.Name
		if me.Parent != nil {
			p := *me.Parent
			parent = &p
		}
	})
	return name, parent, true
}

// inventoryPath returns "/DC0/vm/sub/name" style paths and the datacenter name.
func inventoryPath(ref types.ManagedObjectReference) (string, string) {
	var parts []string
	dc := ""
	cur := &ref
	for cur != nil {
		name, parent, ok := entityInfo(*cur)
		if !ok || parent == nil { // the root folder is not part of paths
			break
		}
		if cur.Type == "Datacenter" {
			dc = name
		}
		parts = append([]string{name}, parts...)
		cur = parent
	}
	return "/" + strings.Join(parts, "/"), dc
}

type hostState_ struct {
	Name              string   `json:"name"`
	Moref             string   `json:"moref"`
	ConnectionState   string   `json:"connectionState"`
	InMaintenanceMode bool     `json:"inMaintenanceMode"`
	Cluster           *string  `json:"cluster"`
	Datacenter        string   `json:"datacenter"`
	VMs               []string `json:"vms"`
	Power             string   `json:"power"`           // the machine: "poweredOn" or "poweredOff" (POST /host/{h}/power)
	Locks             []string `json:"locks"`           // .vmx paths whose files this host holds
	Unregistered      []string `json:"unregisteredVms"` // VMs it has that vCenter removed while cut off ("name (path)")
}

type vmState struct {
	Name                 string  `json:"name"`
	Moref                string  `json:"moref"`
	InstanceUUID         string  `json:"instanceUuid"`
	UUID                 string  `json:"uuid"`
	PowerState           string  `json:"powerState"`
	ConnectionState      string  `json:"connectionState"`
	Host                 string  `json:"host"`
	HostMoref            string  `json:"hostMoref"`
	Cluster              *string `json:"cluster"`
	Datacenter           string  `json:"datacenter"`
	Path                 string  `json:"path"`
	ResourcePool         string  `json:"resourcePool"`
	ToolsRunningStatus   string  `json:"toolsRunningStatus"`
	ToolsStatus          string  `json:"toolsStatus"`
	GuestState           string  `json:"guestState"`
	GuestHeartbeatStatus string  `json:"guestHeartbeatStatus"`
	IgnoreShutdown       bool    `json:"ignoreShutdown"`
	ShutdownDelay        float64 `json:"shutdownDelaySeconds"`
	TaskDelay            float64 `json:"taskDelaySeconds"`  // -1: never finish
	RunningTask          string  `json:"runningTask"`       // a delayed power task under way ("PowerOnVM_Task"), or ""
	ToolsDelay           float64 `json:"toolsDelaySeconds"` // -1: never start
	ToolsStarting        bool    `json:"toolsStarting"`     // powered on, Tools not up yet
	BootTime             string  `json:"bootTime"`          // runtime.bootTime, "" when unset
	LockedBy             string  `json:"filesLockedBy"`     // host holding the VM's files, "" when none
	// The VM's power state on its host, when vCenter cannot see it (its
	// host powered off or cut off); "" when it is what vCenter shows.
	PowerStateOnHost string `json:"powerStateOnHost"`
	Hung             bool   `json:"hung"` // the guest hangs (POST /vm/{id}/hang)
	// What the peer saw done to the VM since it started (see README):
	// power-ons that took effect, guest shutdowns and reboots the guest
	// carried out, hard power-offs that took effect.
	PowerOns          int `json:"powerOns"`
	GracefulShutdowns int `json:"gracefulShutdowns"`
	HardOffs          int `json:"hardOffs"`
}

func clusterOf(hostRef types.ManagedObjectReference) *string {
	_, parent, ok := entityInfo(hostRef)
	if !ok || parent == nil || parent.Type != "ClusterComputeResource" {
		return nil
	}
	name, _, _ := entityInfo(*parent)
	return &name
}

func (p *peer) hostInfo(h *simulator.HostSystem) hostState_ {
	var s hostState_
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(h, func() {
		s.Name = h.Name
		s.Moref = h.Self.Value
		s.ConnectionState = string(h.Runtime.ConnectionState)
		s.InMaintenanceMode = h.Runtime.InMaintenanceMode
		vms = append(vms, h.Vm...)
	})
	s.Cluster = clusterOf(h.Self)
	_, s.Datacenter = inventoryPath(h.Self)
	s.Power, s.Locks, s.Unregistered = "poweredOn", []string{}, []string{}
	p.mu.Lock()
	if p.hostDown[h.Self.Value] {
		s.Power = "poweredOff"
	}
	for path, l := range p.locks {
		if l.host == h.Self.Value {
			s.Locks = append(s.Locks, path)
		}
	}
	for _, o := range p.orphans[h.Self.Value] {
		s.Unregistered = append(s.Unregistered, fmt.Sprintf("%s (%s)", o.ident.name, o.path))
	}
	p.mu.Unlock()
	sort.Strings(s.Locks)
	s.VMs = []string{}
	for _, ref := range vms {
		if name, _, ok := entityInfo(ref); ok {
			s.VMs = append(s.VMs, name)
		}
	}
	sort.Strings(s.VMs)
	return s
}

func (p *peer) vmInfo(vm *simulator.VirtualMachine) vmState {
	var s vmState
	var host, pool *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() {
		s.Name = vm.Name
		s.Moref = vm.Self.Value
		if vm.Config != nil {
			s.InstanceUUID = vm.Config.InstanceUuid
			s.UUID = vm.Config.Uuid
		}
		s.PowerState = string(vm.Runtime.PowerState)
		s.ConnectionState = string(vm.Runtime.ConnectionState)
		if vm.Runtime.Host != nil {
			h := *vm.Runtime.Host
			host = &h
		}
		if vm.ResourcePool != nil {
			rp := *vm.ResourcePool
			pool = &rp
		}
		if vm.Guest != nil {
			s.ToolsRunningStatus = vm.Guest.ToolsRunningStatus
			s.ToolsStatus = string(vm.Guest.ToolsStatus)
			s.GuestState = vm.Guest.GuestState
		}
		s.GuestHeartbeatStatus = string(vm.GuestHeartbeatStatus)
		if vm.Runtime.BootTime != nil {
			s.BootTime = vm.Runtime.BootTime.UTC().Format(time.RFC3339Nano)
		}
		if vm.Config != nil {
			p.mu.Lock()
			l, held := p.locks[vm.Config.Files.VmPathName]
			p.mu.Unlock()
			if held {
				s.LockedBy, _, _ = entityInfo(types.ManagedObjectReference{Type: "HostSystem", Value: l.host})
			}
		}
	})
	if host != nil {
		s.HostMoref = host.Value
		s.Host, _, _ = entityInfo(*host)
		s.Cluster = clusterOf(*host)
	}
	if pool != nil {
		s.ResourcePool, _ = inventoryPath(*pool)
	}
	s.Path, s.Datacenter = inventoryPath(vm.Self)
	f := p.vmFlags(s.Moref)
	s.IgnoreShutdown = f.ignoreShutdown
	s.Hung = f.hung
	s.ShutdownDelay = p.delayFor(s.Moref).Seconds()
	s.TaskDelay = seconds(f.taskDelay)
	s.RunningTask = p.runningTask(s.Moref)
	s.ToolsDelay = seconds(p.toolsDelayFor(s.Moref))
	p.mu.Lock()
	s.ToolsStarting = p.toolsPending[s.Moref]
	if t, ok := p.truth[s.Moref]; ok {
		s.PowerStateOnHost = string(t)
	}
	s.PowerOns, s.GracefulShutdowns, s.HardOffs = p.vmCountsLocked(s.Moref, s.InstanceUUID)
	p.mu.Unlock()
	return s
}

func allVMs() []*simulator.VirtualMachine {
	var out []*simulator.VirtualMachine
	for _, e := range simulator.Map.All("VirtualMachine") {
		if vm, ok := e.(*simulator.VirtualMachine); ok {
			out = append(out, vm)
		}
	}
	return out
}

func allHosts() []*simulator.HostSystem {
	var out []*simulator.HostSystem
	for _, e := range simulator.Map.All("HostSystem") {
		if h, ok := e.(*simulator.HostSystem); ok {
			out = append(out, h)
		}
	}
	return out
}

type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errf(code int, format string, a ...interface{}) error {
	return &httpError{code, fmt.Sprintf(format, a...)}
}

// findVM resolves a moref ("vm-42"), instanceUuid, BIOS uuid or (unique) name.
func findVM(id string) (*simulator.VirtualMachine, error) {
	if vm := getVM(id); vm != nil {
		return vm, nil
	}
	var byName, byUUID []*simulator.VirtualMachine
	lid := strings.ToLower(id)
	for _, vm := range allVMs() {
		simulator.Map.WithLock(vm, func() {
			if vm.Config != nil && (strings.ToLower(vm.Config.InstanceUuid) == lid || strings.ToLower(vm.Config.Uuid) == lid) {
				byUUID = append(byUUID, vm)
			}
			if vm.Name == id {
				byName = append(byName, vm)
			}
		})
	}
	switch {
	case len(byUUID) == 1:
		return byUUID[0], nil
	case len(byName) == 1:
		return byName[0], nil
	case len(byName) > 1 || len(byUUID) > 1:
		var refs []string
		for _, vm := range append(byUUID, byName...) {
			refs = append(refs, vm.Self.Value)
		}
		return nil, errf(http.StatusConflict, "%q is ambiguous, use a moref: %s", id, strings.Join(refs, ", "))
	}
	return nil, errf(http.StatusNotFound, "no VM %q", id)
}

func findHost(id string) (*simulator.HostSystem, error) {
	if h, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "HostSystem", Value: id}).(*simulator.HostSystem); ok {
		return h, nil
	}
	var found []*simulator.HostSystem
	for _, h := range allHosts() {
		simulator.Map.WithLock(h, func() {
			if h.Name == id {
				found = append(found, h)
			}
		})
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, errf(http.StatusNotFound, "no host %q", id)
	}
	return nil, errf(http.StatusConflict, "host name %q is ambiguous, use a moref", id)
}

// ---------------------------------------------------------------------------
// mutations (each under the lock of the object it changes)

// setHostConnection sets what vCenter sees of a host.  A host that connects
// again is re-synchronised (see resync).  The caller must not hold
// p.creating.
func (p *peer) setHostConnection(h *simulator.HostSystem, state string) error {
	var cs types.HostSystemConnectionState
	switch state {
	case "connected", "disconnected", "notResponding":
		cs = types.HostSystemConnectionState(state)
	default:
		return errf(http.StatusBadRequest, "state must be connected, disconnected or notResponding")
	}
	p.mu.Lock()
	down := p.hostDown[h.Self.Value]
	p.mu.Unlock()
	if down && cs == types.HostSystemConnectionStateConnected {
		return errf(http.StatusConflict, "host %s is powered off: power it on (POST /host/{h}/power) to connect it", h.Name)
	}
	var vms []types.ManagedObjectReference
	was := types.HostSystemConnectionStateConnected
	simulator.Map.WithLock(h, func() {
		was = h.Runtime.ConnectionState
		status := types.ManagedEntityStatusGreen
		// vSphere: a host that is disconnected or not responding has power
		// state "unknown" (HostSystemPowerState).
		power := types.HostSystemPowerStatePoweredOn
		if cs != types.HostSystemConnectionStateConnected {
			status, power = types.ManagedEntityStatusGray, types.HostSystemPowerStateUnknown
			if cs == types.HostSystemConnectionStateNotResponding {
				status = types.ManagedEntityStatusRed
			}
		}
		// HostSystem.summary.runtime points at HostSystem.runtime in the simulator.
		simulator.Map.Update(h, []types.PropertyChange{
			{Name: "runtime.connectionState", Val: cs},
			{Name: "summary.runtime.connectionState", Val: cs},
			{Name: "runtime.powerState", Val: power},
			{Name: "overallStatus", Val: status},
			{Name: "summary.overallStatus", Val: status},
		})
		vms = append(vms, h.Vm...)
	})
	// vCenter shows the VMs of a host it cannot talk to as disconnected.
	vmcs := types.VirtualMachineConnectionStateConnected
	if cs != types.HostSystemConnectionStateConnected {
		vmcs = types.VirtualMachineConnectionStateDisconnected
	}
	for _, ref := range vms {
		if vm := getVM(ref.Value); vm != nil {
			simulator.Map.WithLock(vm, func() {
				simulator.Map.Update(vm, []types.PropertyChange{
					{Name: "runtime.connectionState", Val: vmcs},
					{Name: "summary.runtime.connectionState", Val: vmcs},
				})
			})
		}
	}
	if cs == types.HostSystemConnectionStateConnected && was != cs {
		p.resync(h)
	}
	return nil
}

// setHostPower powers a host off (a dead host) or on again.  Powered off,
// the host stops answering vCenter (notResponding), its VMs stop and its
// hold on their files ends, so that another host can open them; vCenter
// cannot see any of this and keeps showing the VMs as they last were.
// Powered on, the host boots and connects to vCenter again (resync); its
// VMs are then powered off.
func (p *peer) setHostPower(h *simulator.HostSystem, state string) error {
	id := h.Self.Value
	switch state {
	case "poweredOff", "off":
		p.mu.Lock()
		p.hostDown[id] = true
		for path, l := range p.locks {
			if l.host == id {
				delete(p.locks, path)
			}
		}
		for i := range p.orphans[id] {
			p.orphans[id][i].running = false
		}
		p.mu.Unlock()
		var vms []types.ManagedObjectReference
		simulator.Map.WithLock(h, func() { vms = append(vms, h.Vm...) })
		for _, ref := range vms {
			vm := getVM(ref.Value)
			if vm == nil {
				continue
			}
			simulator.Map.WithLock(vm, func() {
				if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
					p.mu.Lock()
					p.truth[ref.Value] = types.VirtualMachinePowerStatePoweredOff
					delete(p.toolsPending, ref.Value)
					if f, ok := p.flags[ref.Value]; ok {
						f.hung = false // the guest died with its host
					}
					p.mu.Unlock()
				}
			})
		}
		return p.setHostConnection(h, "notResponding")
	case "poweredOn", "on":
		p.mu.Lock()
		delete(p.hostDown, id)
		p.mu.Unlock()
		return p.setHostConnection(h, "connected")
	}
	return errf(http.StatusBadRequest, "state must be poweredOn or poweredOff")
}

// resync is what vCenter does when a host connects again: it reads the
// host's VMs.  Those it lists get their state on the host (a VM whose host
// was powered off is powered off); those the host has registered but
// vCenter removed from its inventory meanwhile (UnregisterVM while the host
// was cut off) come back into the inventory, in the datacenter's
// "Discovered virtual machine" folder, running if the host still ran them.
// When their .vmx is registered on another host too (a recovery), both
// stay; the returning VM gets a new instanceUuid if the other one has its
// own (VmInstanceUuidConflictEvent).  See README.
func (p *peer) resync(h *simulator.HostSystem) {
	p.creating.Lock()
	defer p.creating.Unlock()
	p.relocMu.Lock()
	defer p.relocMu.Unlock()
	id := h.Self.Value
	var vms []types.ManagedObjectReference
	simulator.Map.WithLock(h, func() { vms = append(vms, h.Vm...) })
	for _, ref := range vms {
		p.mu.Lock()
		state, diverged := p.truth[ref.Value]
		delete(p.truth, ref.Value)
		p.mu.Unlock()
		vm := getVM(ref.Value)
		if !diverged || vm == nil {
			continue
		}
		simulator.Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != state {
				simulator.Map.Update(vm, []types.PropertyChange{
					{Name: "runtime.powerState", Val: state},
					{Name: "summary.runtime.powerState", Val: state},
				})
			}
		})
	}
	p.mu.Lock()
	back := p.orphans[id]
	delete(p.orphans, id)
	p.mu.Unlock()
	for _, o := range back {
		if err := p.rediscover(h, o); err != nil {
			log.Printf("resync %s: %s: %v", h.Name, o.path, err)
		}
	}
}

const discoveredFolder = "Discovered virtual machine"

// rediscover registers a VM the host still has (see resync).  The caller
// holds p.creating and p.relocMu.
func (p *peer) rediscover(h *simulator.HostSystem, o orphanVM) error {
	ctx := context.Background()
	dcRef := datacenterOf(h.Self)
	if dcRef == nil {
		return fmt.Errorf("no datacenter above %s", h.Name)
	}
	dc := simulator.Map.Get(*dcRef).(*simulator.Datacenter)
	var vmFolder types.ManagedObjectReference
	simulator.Map.WithLock(dc, func() { vmFolder = dc.VmFolder })
	folder, err := p.childFolder(vmFolder, discoveredFolder)
	if err != nil {
		return err
	}
	pool, _ := crInfo(hostCR(h.Self))
	if pool == nil {
		return fmt.Errorf("no resource pool for %s", h.Name)
	}
	register := func() (types.ManagedObjectReference, error) {
		task, err := folder.RegisterVM(ctx, o.path, o.ident.name, false,
			object.NewResourcePool(p.client, *pool), object.NewHostSystem(p.client, h.Self))
		if err != nil {
			return types.ManagedObjectReference{}, err
		}
		info, err := task.WaitForResult(ctx, nil)
		if err != nil {
			return types.ManagedObjectReference{}, err
		}
		return info.Result.(types.ManagedObjectReference), nil
	}
	var ref types.ManagedObjectReference
	if other := vmByPath(o.path); other != nil {
		// The simulator refuses a path that is registered (AlreadyExists);
		// vCenter lists a VM for each host that has it.  Hide the other
		// registration from the simulator's check, under that VM's lock.
		ovm := getVM(other.Value)
		simulator.Map.WithLock(ovm, func() {
			saved := ovm.Config.Files.VmPathName
			ovm.Config.Files.VmPathName = ""
			ref, err = register()
			ovm.Config.Files.VmPathName = saved
		})
	} else {
		ref, err = register()
	}
	if err != nil {
		return err
	}
	vm := getVM(ref.Value)
	if vm == nil {
		return fmt.Errorf("registered %s is gone", ref.Value)
	}
	p.mu.Lock()
	delete(p.unregistered, o.path) // the .vmx's identity is in use again
	if o.ident.flags != nil {
		f := *o.ident.flags
		p.flags[ref.Value] = &f
	}
	p.mu.Unlock()
	iu, conflict := o.ident.instanceUUID, types.ManagedObjectReference{}
	if iu != "" {
		if refs, _ := findAllByUUID(nil, iu, true, types.NewBool(true)); len(without(refs, ref)) > 0 {
			conflict, iu = without(refs, ref)[0], randomUUID()
		}
	}
	var ev eventRefs
	simulator.Map.WithLock(vm, func() {
		changes := []types.PropertyChange{}
		if o.ident.uuid != "" {
			changes = append(changes,
				types.PropertyChange{Name: "config.uuid", Val: o.ident.uuid},
				types.PropertyChange{Name: "summary.config.uuid", Val: o.ident.uuid})
		}
		if iu != "" {
			changes = append(changes,
				types.PropertyChange{Name: "config.instanceUuid", Val: iu},
				types.PropertyChange{Name: "summary.config.instanceUuid", Val: iu})
		}
		if p.toolsWanted(ref.Value) {
			changes = append(changes, guestChanges(types.VirtualMachinePowerStatePoweredOff, true)...)
		}
		simulator.Map.Update(vm, changes)
		if o.running {
			on := types.VirtualMachinePowerStatePoweredOn
			simulator.Map.Update(vm, []types.PropertyChange{
				{Name: "runtime.powerState", Val: on},
				{Name: "summary.runtime.powerState", Val: on},
			})
			// it has been running all along: Tools up, its own boot time
			p.cancelTools(ref.Value)
			if p.toolsWanted(ref.Value) {
				simulator.Map.Update(vm, p.guestChangesFor(ref.Value, on, true))
			}
			if o.bootTime != nil {
				b := *o.bootTime
				vm.Runtime.BootTime, vm.Summary.Runtime.BootTime = &b, &b
			}
		}
		ev = vmEventLocked(vm)
	})
	p.postEvent(&types.VmDiscoveredEvent{VmEvent: ev.event()})
	if conflict.Value != "" {
		name, _, _ := entityInfo(conflict)
		p.postEvent(&types.VmInstanceUuidConflictEvent{VmEvent: ev.event(), InstanceUuid: o.ident.instanceUUID,
			ConflictedVm: types.VmEventArgument{EntityEventArgument: types.EntityEventArgument{Name: name}, Vm: conflict}})
	}
	return nil
}

// childFolder returns the folder called name in parent, created if needed.
func (p *peer) childFolder(parent types.ManagedObjectReference, name string) (*object.Folder, error) {
	f := simulator.Map.Get(parent).(*simulator.Folder)
	var children []types.ManagedObjectReference
	simulator.Map.WithLock(f, func() { children = append(children, f.ChildEntity...) })
	for _, c := range children {
		if c.Type != "Folder" {
			continue
		}
		if n, _, _ := entityInfo(c); n == name {
			return object.NewFolder(p.client, c), nil
		}
	}
	return object.NewFolder(p.client, parent).CreateFolder(context.Background(), name)
}

func (p *peer) setMaintenance(h *simulator.HostSystem, on bool) {
	simulator.Map.WithLock(h, func() {
		simulator.Map.Update(h, []types.PropertyChange{
			{Name: "runtime.inMaintenanceMode", Val: on},
			{Name: "summary.runtime.inMaintenanceMode", Val: on},
		})
	})
}

func (p *peer) setHeartbeat(vm *simulator.VirtualMachine, status string) error {
	switch status {
	case "green", "yellow", "red", "gray":
	default:
		return errf(http.StatusBadRequest, "status must be green, yellow, red or gray")
	}
	p.cancelTools(vm.Self.Value) // the colour set by hand stays until the next power-on
	simulator.Map.WithLock(vm, func() {
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guestHeartbeatStatus", Val: types.ManagedEntityStatus(status)},
			{Name: "summary.quickStats.guestHeartbeatStatus", Val: types.ManagedEntityStatus(status)},
		})
	})
	return nil
}

// setTools records the wish (kept across power cycles) and applies it now:
// running=true marks tools running even on a powered-off VM if asked to.
func (p *peer) setTools(vm *simulator.VirtualMachine, running bool) {
	id := vm.Self.Value
	p.setVMFlags(id, func(f *vmFlags) { f.tools = &running })
	p.cancelTools(id)
	simulator.Map.WithLock(vm, func() {
		state := vm.Runtime.PowerState
		if running {
			state = types.VirtualMachinePowerStatePoweredOn
		}
		simulator.Map.Update(vm, guestChanges(state, running))
	})
}

func (p *peer) rename(vm *simulator.VirtualMachine, name string) error {
	if name == "" {
		return errf(http.StatusBadRequest, "empty name")
	}
	task, err := object.NewVirtualMachine(p.client, vm.Self).Rename(context.Background(), name)
	if err == nil {
		err = task.Wait(context.Background())
	}
	if err != nil {
		return errf(http.StatusConflict, "rename to %q: %v (names are unique per folder)", name, err)
	}
	return nil
}

// move places the VM in a folder given relative to its datacenter's vm
// folder ("team-a/web"), creating missing folders; "" means the vm folder itself.
func (p *peer) move(vm *simulator.VirtualMachine, folder string) error {
	ctx := context.Background()
	// find the datacenter
	cur := vm.Self
	var dc *simulator.Datacenter
	for {
		_, parent, ok := entityInfo(cur)
		if !ok || parent == nil {
			return errf(http.StatusInternalServerError, "no datacenter above %s", vm.Self.Value)
		}
		if parent.Type == "Datacenter" {
			dc = simulator.Map.Get(*parent).(*simulator.Datacenter)
			break
		}
		cur = *parent
	}
	var vmFolder types.ManagedObjectReference
	simulator.Map.WithLock(dc, func() { vmFolder = dc.VmFolder })
	target := object.NewFolder(p.client, vmFolder)
	for _, part := range strings.Split(folder, "/") {
		if part == "" {
			continue
		}
		var next *types.ManagedObjectReference
		f := simulator.Map.Get(target.Reference()).(*simulator.Folder)
		var children []types.ManagedObjectReference
		simulator.Map.WithLock(f, func() { children = append(children, f.ChildEntity...) })
		for _, c := range children {
			if c.Type != "Folder" {
				continue
			}
			if name, _, _ := entityInfo(c); name == part {
				cc := c
				next = &cc
				break
			}
		}
		if next == nil {
			nf, err := target.CreateFolder(ctx, part)
			if err != nil {
				return errf(http.StatusConflict, "create folder %q: %v", part, err)
			}
			target = nf
		} else {
			target = object.NewFolder(p.client, *next)
		}
	}
	task, err := target.MoveInto(ctx, []types.ManagedObjectReference{vm.Self})
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return errf(http.StatusConflict, "move into %q: %v", folder, err)
	}
	return nil
}

// relocate moves the VM to another host behind the client's back (as DRS or
// an operator would): runtime.host, the hosts' vm lists and, across compute
// resources, the resource pool (see moveVM).  No checks on the hosts' states.
func (p *peer) relocate(vm *simulator.VirtualMachine, h *simulator.HostSystem) error {
	var srcHost, srcPool *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() { srcHost, srcPool = copyRef(vm.Runtime.Host), copyRef(vm.ResourcePool) })
	href := h.Self
	target, pool, f := relocationTarget(srcHost, srcPool, &href, nil)
	if f != nil {
		return errf(http.StatusConflict, "relocate to %s: %T", h.Self.Value, f)
	}
	p.moveVM(vm, target, pool)
	return nil
}

func poolOwner(ref types.ManagedObjectReference) types.ManagedObjectReference {
	for i := 0; i < 64; i++ {
		_, parent, ok := entityInfo(ref)
		if !ok || parent == nil {
			return ref
		}
		if parent.Type != "ResourcePool" {
			return *parent
		}
		ref = *parent
	}
	return ref
}

func without(refs []types.ManagedObjectReference, x types.ManagedObjectReference) []types.ManagedObjectReference {
	out := make([]types.ManagedObjectReference, 0, len(refs))
	for _, r := range refs {
		if r != x {
			out = append(out, r)
		}
	}
	return out
}

func (p *peer) power(vm *simulator.VirtualMachine, state string) error {
	ctx := context.Background()
	o := object.NewVirtualMachine(p.client, vm.Self)
	var task *object.Task
	var err error
	var host *types.ManagedObjectReference
	simulator.Map.WithLock(vm, func() { host = copyRef(vm.Runtime.Host) })
	if host != nil {
		p.mu.Lock()
		down := p.hostDown[host.Value]
		p.mu.Unlock()
		if down {
			return errf(http.StatusConflict, "the VM's host %s is powered off", host.Value)
		}
	}
	switch state {
	case "poweredOn", "on":
		var holder string
		locked := false
		simulator.Map.WithLock(vm, func() {
			if vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
				holder, locked = p.lockedElsewhere(vm)
			}
		})
		if locked {
			return errf(http.StatusConflict, "its files are locked by host %s (Failed to lock the file)", holder)
		}
		task, err = o.PowerOn(ctx)
	case "poweredOff", "off":
		task, err = o.PowerOff(ctx)
	case "suspended", "suspend":
		task, err = o.Suspend(ctx)
	default:
		return errf(http.StatusBadRequest, "state must be poweredOn, poweredOff or suspended")
	}
	if err == nil {
		err = task.Wait(ctx)
	}
	if err != nil {
		return errf(http.StatusConflict, "%v", err)
	}
	return nil
}

// ---------------------------------------------------------------------------
// control API

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeErr(w http.ResponseWriter, err error) {
	code := http.StatusBadRequest
	var he *httpError
	if errors.As(err, &he) {
		code = he.code
	}
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

func (p *peer) state() interface{} {
	hosts := []hostState_{}
	for _, h := range allHosts() {
		hosts = append(hosts, p.hostInfo(h))
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	vms := []vmState{}
	for _, vm := range allVMs() {
		vms = append(vms, p.vmInfo(vm))
	}
	sort.Slice(vms, func(i, j int) bool {
		if vms[i].Name != vms[j].Name {
			return vms[i].Name < vms[j].Name
		}
		return vms[i].Moref < vms[j].Moref
	})
	return map[string]interface{}{"hosts": hosts, "vms": vms}
}

const controlHelp = `vcsim test peer control API (JSON bodies)
GET  /state                              hosts and VMs
GET  /operations[?vm=ID]                 the power and registration calls received over SOAP, oldest first
GET  /host/{name-or-moref}               one host
POST /host/{name}/connection            {"state": "connected"|"disconnected"|"notResponding"}   what vCenter sees; the host runs on
POST /host/{name}/power                 {"state": "poweredOff"|"poweredOn"}   the machine: off, its VMs stop and its file locks go; on, it connects
POST /host/{name}/maintenance           {"on": true}
GET  /vm/{name-or-uuid-or-moref}         one VM
GET  /vm/{id}/operations                 the calls received for this VM (by moref or instanceUuid, across re-registrations)
POST /vm/{id}/heartbeat                 {"status": "green"|"yellow"|"red"|"gray"}   (drops a Tools start still to come)
POST /vm/{id}/tools                     {"running": true}   at once (drops a Tools start still to come)
POST /vm/{id}/tools_delay               {"seconds": 2}   Tools start that long after each power-on; -1 or "never": they never start
POST /vm/{id}/ignore_shutdown           {"on": true}
POST /vm/{id}/hang                      {"on": true}   the guest hangs: heartbeat red, guest shutdown/reboot ignored, until it powers off
POST /vm/{id}/shutdown_delay            {"seconds": 5}
POST /vm/{id}/task_delay                {"seconds": 3}   power tasks stay running that long; a host lost meanwhile fails them; -1 or "never": they never finish
POST /vm/{id}/rename                    {"name": "new name"}
POST /vm/{id}/move                      {"folder": "sub/dir"}   (relative to the datacenter's vm folder)
POST /vm/{id}/relocate                  {"host": "name-or-moref"}
POST /vm/{id}/power                     {"state": "poweredOn"|"poweredOff"|"suspended"}
GET  /freeze                             {"frozen", "secondsLeft", "blocked"}
POST /freeze                            {"seconds": 30}   the SOAP service answers nothing for that long; 0 thaws
GET  /soap                               {"state": "up"|"down"|"silent", "listen"}
POST /soap                              {"state": "up"|"down"|"silent"}   down: the SOAP port refuses connections; silent: a freeze with no end; up: serve again
Path segments are URL-escaped (a name containing "/" is sent as %2F).
`

// delaySeconds reads {"seconds": n} (n >= 0), and -1 or "never" when
// neverOK: a delay that never ends.
func delaySeconds(body map[string]interface{}, neverOK bool) (time.Duration, error) {
	switch v := body["seconds"].(type) {
	case float64:
		if v >= 0 {
			return time.Duration(v * float64(time.Second)), nil
		}
		if neverOK && v == -1 {
			return never, nil
		}
	case string:
		if neverOK && v == "never" {
			return never, nil
		}
	}
	if neverOK {
		return 0, errf(http.StatusBadRequest, "body needs \"seconds\": a number >= 0, or -1 or \"never\"")
	}
	return 0, errf(http.StatusBadRequest, "body needs a number \"seconds\" >= 0")
}

func (p *peer) control(w http.ResponseWriter, r *http.Request) {
	raw := strings.Trim(r.URL.EscapedPath(), "/")
	var parts []string
	if raw != "" {
		for _, s := range strings.Split(raw, "/") {
			u, err := url.PathUnescape(s)
			if err != nil {
				writeErr(w, errf(http.StatusBadRequest, "bad path: %v", err))
				return
			}
			parts = append(parts, u)
		}
	}
	var body map[string]interface{}
	if r.Method == http.MethodPost {
		data, _ := ioutil.ReadAll(io.LimitReader(r.Body, 1<<20))
		if len(bytes.TrimSpace(data)) > 0 {
			if err := json.Unmarshal(data, &body); err != nil {
				writeErr(w, errf(http.StatusBadRequest, "bad JSON body: %v", err))
				return
			}
		}
	}
	str := func(k string) (string, error) {
		v, ok := body[k].(string)
		if !ok {
			return "", errf(http.StatusBadRequest, "body needs a string %q", k)
		}
		return v, nil
	}
	boolean := func(k string) (bool, error) {
		v, ok := body[k].(bool)
		if !ok {
			return false, errf(http.StatusBadRequest, "body needs a boolean %q", k)
		}
		return v, nil
	}

	// A host that connects again is re-synchronised, which may register VMs
	// (peer.creating is taken for writing there): these run without the
	// read lock the other requests hold.
	if len(parts) == 3 && parts[0] == "host" && r.Method == http.MethodPost && (parts[2] == "connection" || parts[2] == "power") {
		h, err := findHost(parts[1])
		if err == nil {
			var s string
			if s, err = str("state"); err == nil {
				if parts[2] == "power" {
					err = p.setHostPower(h, s)
				} else {
					err = p.setHostConnection(h, s)
				}
			}
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		p.creating.RLock()
		defer p.creating.RUnlock()
		writeJSON(w, http.StatusOK, p.hostInfo(h))
		return
	}
	p.creating.RLock() // see peer.creating
	defer p.creating.RUnlock()

	switch {
	case len(parts) == 0 && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, controlHelp)
	case len(parts) == 1 && parts[0] == "state" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, p.state())
	case len(parts) == 1 && parts[0] == "operations" && r.Method == http.MethodGet:
		var match func(opRecord) bool
		if id := r.URL.Query().Get("vm"); id != "" {
			match = func(o opRecord) bool {
				return o.VM == id || o.Name == id || (o.InstanceUUID != "" && strings.EqualFold(o.InstanceUUID, id))
			}
		}
		writeJSON(w, http.StatusOK, map[string]interface{}{"operations": p.opsFor(match)})
	case len(parts) == 1 && parts[0] == "freeze" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		if r.Method == http.MethodPost {
			secs, ok := body["seconds"].(float64)
			if !ok || secs < 0 {
				writeErr(w, errf(http.StatusBadRequest, "body needs a number \"seconds\" >= 0"))
				return
			}
			p.freeze.set(time.Duration(secs * float64(time.Second)))
		}
		writeJSON(w, http.StatusOK, p.freeze.state())
	case len(parts) == 1 && parts[0] == "soap" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		if r.Method == http.MethodPost {
			s, err := str("state")
			if err == nil {
				err = p.setSOAP(s)
			}
			if err != nil {
				writeErr(w, err)
				return
			}
		}
		writeJSON(w, http.StatusOK, p.soapState())
	case len(parts) >= 2 && parts[0] == "host":
		h, err := findHost(parts[1])
		if err != nil {
			writeErr(w, err)
			return
		}
		switch {
		case len(parts) == 2 && r.Method == http.MethodGet:
		case len(parts) == 3 && r.Method == http.MethodPost && parts[2] == "maintenance":
			on, err := boolean("on")
			if err != nil {
				writeErr(w, err)
				return
			}
			p.setMaintenance(h, on)
		default:
			writeErr(w, errf(http.StatusNotFound, "unknown host action %s %s", r.Method, r.URL.Path))
			return
		}
		writeJSON(w, http.StatusOK, p.hostInfo(h))
	case len(parts) >= 2 && parts[0] == "vm":
		vm, err := findVM(parts[1])
		if err != nil {
			writeErr(w, err)
			return
		}
		id := vm.Self.Value
		if len(parts) == 2 && r.Method == http.MethodGet {
			writeJSON(w, http.StatusOK, p.vmInfo(vm))
			return
		}
		if len(parts) == 3 && parts[2] == "operations" && r.Method == http.MethodGet {
			var iu string
			simulator.Map.WithLock(vm, func() {
				if vm.Config != nil {
					iu = vm.Config.InstanceUuid
				}
			})
			ops := p.opsFor(func(o opRecord) bool {
				return o.VM == id || (iu != "" && strings.EqualFold(o.InstanceUUID, iu))
			})
			writeJSON(w, http.StatusOK, map[string]interface{}{"operations": ops})
			return
		}
		if len(parts) != 3 || r.Method != http.MethodPost {
			writeErr(w, errf(http.StatusNotFound, "unknown VM action %s %s", r.Method, r.URL.Path))
			return
		}
		switch parts[2] {
		case "heartbeat":
			var s string
			if s, err = str("status"); err == nil {
				err = p.setHeartbeat(vm, s)
			}
		case "tools_delay":
			var d time.Duration
			if d, err = delaySeconds(body, true); err == nil {
				p.setVMFlags(id, func(f *vmFlags) { f.toolsDelay = &d })
			}
		case "tools":
			var on bool
			if on, err = boolean("running"); err == nil {
				p.setTools(vm, on)
			}
		case "ignore_shutdown":
			var on bool
			if on, err = boolean("on"); err == nil {
				p.setVMFlags(id, func(f *vmFlags) { f.ignoreShutdown = on })
			}
		case "hang":
			var on bool
			if on, err = boolean("on"); err == nil {
				err = p.setHang(vm, on)
			}
		case "shutdown_delay":
			var d time.Duration
			if d, err = delaySeconds(body, false); err == nil {
				p.setVMFlags(id, func(f *vmFlags) { f.shutdownDelay = &d })
			}
		case "task_delay":
			var d time.Duration
			if d, err = delaySeconds(body, true); err == nil {
				p.setVMFlags(id, func(f *vmFlags) { f.taskDelay = d })
			}
		case "rename":
			var s string
			if s, err = str("name"); err == nil {
				err = p.rename(vm, s)
			}
		case "move":
			var s string
			if s, err = str("folder"); err == nil {
				err = p.move(vm, s)
			}
		case "relocate":
			var s string
			if s, err = str("host"); err == nil {
				var h *simulator.HostSystem
				if h, err = findHost(s); err == nil {
					err = p.relocate(vm, h)
				}
			}
		case "power":
			var s string
			if s, err = str("state"); err == nil {
				err = p.power(vm, s)
			}
		default:
			err = errf(http.StatusNotFound, "unknown VM action %q", parts[2])
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, p.vmInfo(vm))
	default:
		writeErr(w, errf(http.StatusNotFound, "unknown endpoint %s %s (GET / lists them)", r.Method, r.URL.Path))
	}
}

// ---------------------------------------------------------------------------
// -lab: the model built to a lab estate (see README, "Lab estates")

type labVM struct {
	name, power, heartbeat string
	graceful               bool
	memoryMB, cpus         int32
	folder, uuid           string
	priority               int // 0: none
}

type labHost struct {
	name, state string
	vms         []labVM
}

type labCluster struct {
	name  string
	hosts []labHost
}

type labEstate struct {
	clusters []labCluster
	hosts    []labHost // standalone
}

// vsphereName escapes a name as vCenter stores entity names: "%", "/" and
// "\" become "%25", "%2f" and "%5c".
func vsphereName(s string) string {
	return strings.NewReplacer("%", "%25", "/", "%2f", `\`, "%5c").Replace(s)
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// restartPriority: the lab's priority (1 restarts first) as vSphere HA's
// ClusterDasVmSettingsRestartPriority.
var restartPriority = map[int]string{1: "highest", 2: "high", 3: "medium", 4: "low", 5: "lowest"}

func labErr(where, format string, a ...interface{}) error {
	return fmt.Errorf("-lab: %s: %s", where, fmt.Sprintf(format, a...))
}

func labKeys(where string, m map[string]interface{}, allowed ...string) error {
	ok := map[string]bool{}
	for _, k := range allowed {
		ok[k] = true
	}
	var bad []string
	for k := range m {
		if !ok[k] {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return labErr(where, "unknown field %q (known: %s)", bad[0], strings.Join(allowed, ", "))
	}
	return nil
}

func labName(where string, m map[string]interface{}) (string, error) {
	v, ok := m["name"]
	if !ok {
		return "", labErr(where, "field \"name\" is missing")
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", labErr(where, "name must be a non-empty string, not %v", v)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "", labErr(where, "name %q holds a control character, which vSphere names cannot", s)
		}
	}
	return s, nil
}

func labString(where string, m map[string]interface{}, key, def string, allowed ...string) (string, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", labErr(where, "%s must be a string, not %v", key, v)
	}
	if len(allowed) == 0 {
		return s, nil
	}
	for _, a := range allowed {
		if s == a {
			return s, nil
		}
	}
	return "", labErr(where, "unknown %s %q (known: %s)", key, s, strings.Join(allowed, ", "))
}

func labInt(where string, m map[string]interface{}, key string, def, min, max int) (int, error) {
	v, ok := m[key]
	if !ok {
		return def, nil
	}
	f, isNum := v.(float64)
	if !isNum || f != float64(int(f)) || int(f) < min || int(f) > max {
		return 0, labErr(where, "%s must be an integer from %d to %d, not %v", key, min, max, v)
	}
	return int(f), nil
}

func labList(where string, m map[string]interface{}, key string) ([]map[string]interface{}, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return nil, nil
	}
	list, isList := v.([]interface{})
	if !isList {
		return nil, labErr(where, "%s must be a list", key)
	}
	out := make([]map[string]interface{}, 0, len(list))
	for i, e := range list {
		em, isMap := e.(map[string]interface{})
		if !isMap {
			return nil, labErr(fmt.Sprintf("%s.%s[%d]", where, key, i), "must be an object")
		}
		out = append(out, em)
	}
	return out, nil
}

func parseLabHost(where string, m map[string]interface{}, inCluster bool) (labHost, error) {
	var h labHost
	name, err := labName(where, m)
	if err != nil {
		return h, err
	}
	where = fmt.Sprintf("%s (%q)", where, name)
	if k, ok := m["kind"]; ok {
		return h, labErr(where, "kind %v cannot be represented: a vCenter host is an ESXi hypervisor (bare metal belongs to a redfish endpoint)", k)
	}
	if err := labKeys(where, m, "name", "state", "vms"); err != nil {
		return h, err
	}
	h.name = name
	if h.state, err = labString(where, m, "state", "connected", "connected", "maintenance", "disconnected", "not_responding"); err != nil {
		return h, err
	}
	vms, err := labList(where, m, "vms")
	if err != nil {
		return h, err
	}
	for i, vm := range vms {
		w := fmt.Sprintf("%s.vms[%d]", where, i)
		var v labVM
		if v.name, err = labName(w, vm); err != nil {
			return h, err
		}
		w = fmt.Sprintf("%s (%q)", w, v.name)
		if err := labKeys(w, vm, "name", "power", "heartbeat", "graceful", "memory_mb", "cpus", "folder", "uuid", "priority"); err != nil {
			return h, err
		}
		if v.power, err = labString(w, vm, "power", "running", "running", "stopped", "suspended"); err != nil {
			return h, err
		}
		if v.heartbeat, err = labString(w, vm, "heartbeat", "ok", "ok", "lost", "none"); err != nil {
			return h, err
		}
		if v.heartbeat == "lost" && v.power == "stopped" {
			return h, labErr(w, "heartbeat lost needs a running or suspended guest (power is stopped): a hang is a state of a running guest")
		}
		v.graceful = true
		if g, ok := vm["graceful"]; ok {
			b, isBool := g.(bool)
			if !isBool {
				return h, labErr(w, "graceful must be true or false, not %v", g)
			}
			v.graceful = b
		}
		mem, err := labInt(w, vm, "memory_mb", 1024, 4, 24*1024*1024)
		if err != nil {
			return h, err
		}
		cpus, err := labInt(w, vm, "cpus", 1, 1, 768)
		if err != nil {
			return h, err
		}
		v.memoryMB, v.cpus = int32(mem), int32(cpus)
		if v.folder, err = labString(w, vm, "folder", ""); err != nil {
			return h, err
		}
		if v.uuid, err = labString(w, vm, "uuid", ""); err != nil {
			return h, err
		}
		if v.uuid != "" && !uuidRE.MatchString(v.uuid) {
			return h, labErr(w, "uuid %q is not a UUID (8-4-4-4-12 hex digits)", v.uuid)
		}
		if _, ok := vm["priority"]; ok && !inCluster {
			return h, labErr(w, "priority: a standalone host has no vSphere HA, so no restart priority")
		}
		if v.priority, err = labInt(w, vm, "priority", 0, 1, 5); err != nil {
			return h, err
		}
		if h.state == "maintenance" && v.power == "running" {
			return h, labErr(w, "running on a host in maintenance mode: vSphere puts a host in maintenance mode only once no VM runs on it (power: stopped or suspended)")
		}
		h.vms = append(h.vms, v)
	}
	return h, nil
}

// parseLab reads a lab estate (see README).  The lab file's endpoint keys
// that are not the estate's (name, platform, credentials, username,
// password) are accepted and ignored: the credentials come with -username
// and -password.
func parseLab(data []byte) (*labEstate, error) {
	var top map[string]interface{}
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("-lab: not a JSON object: %v", err)
	}
	if err := labKeys("estate", top, "clusters", "hosts", "name", "platform", "credentials", "username", "password"); err != nil {
		return nil, err
	}
	if p, ok := top["platform"]; ok && p != "vmware" {
		return nil, labErr("estate", "platform %v: this peer is a vCenter (vmware)", p)
	}
	est := &labEstate{}
	hostNames := map[string]string{} // vSphere name -> where
	vmNames := map[string]string{}   // folder + "\x00" + vSphere name -> where
	check := func(where string, h labHost) error {
		if prev, dup := hostNames[vsphereName(h.name)]; dup {
			return labErr(where, "host name %q is already used by %s: vCenter holds a host once", h.name, prev)
		}
		hostNames[vsphereName(h.name)] = where
		for _, v := range h.vms {
			key := labFolderKey(v.folder) + "\x00" + vsphereName(v.name)
			if prev, dup := vmNames[key]; dup {
				return labErr(where, "VM %q in folder %q: the name is already used in that folder by %s (vCenter: DuplicateName; put one in another folder)", v.name, v.folder, prev)
			}
			vmNames[key] = fmt.Sprintf("the VM on host %q", h.name)
		}
		return nil
	}
	clusters, err := labList("estate", top, "clusters")
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, c := range clusters {
		where := fmt.Sprintf("clusters[%d]", i)
		name, err := labName(where, c)
		if err != nil {
			return nil, err
		}
		where = fmt.Sprintf("%s (%q)", where, name)
		if err := labKeys(where, c, "name", "hosts"); err != nil {
			return nil, err
		}
		if seen[vsphereName(name)] {
			return nil, labErr(where, "cluster name %q is used twice (vCenter: DuplicateName)", name)
		}
		seen[vsphereName(name)] = true
		lc := labCluster{name: name}
		hosts, err := labList(where, c, "hosts")
		if err != nil {
			return nil, err
		}
		for j, hm := range hosts {
			w := fmt.Sprintf("%s.hosts[%d]", where, j)
			h, err := parseLabHost(w, hm, true)
			if err != nil {
				return nil, err
			}
			if err := check(w, h); err != nil {
				return nil, err
			}
			lc.hosts = append(lc.hosts, h)
		}
		est.clusters = append(est.clusters, lc)
	}
	hosts, err := labList("estate", top, "hosts")
	if err != nil {
		return nil, err
	}
	for j, hm := range hosts {
		w := fmt.Sprintf("hosts[%d]", j)
		h, err := parseLabHost(w, hm, false)
		if err != nil {
			return nil, err
		}
		if err := check(w, h); err != nil {
			return nil, err
		}
		est.hosts = append(est.hosts, h)
	}
	return est, nil
}

// labFolder splits a lab folder ("team-a/web") into vSphere folder names
// below the datacenter's vm folder; "/" separates folders, so a folder
// name cannot hold one.
func labFolder(folder string) []string {
	var out []string
	for _, part := range strings.Split(folder, "/") {
		if part != "" {
			out = append(out, vsphereName(part))
		}
	}
	return out
}

func labFolderKey(folder string) string { return strings.Join(labFolder(folder), "/") }

// buildLab builds the estate into the (empty) datacenter the model made,
// the vSphere way, through the in-process client: CreateClusterEx,
// AddHost_Task / AddStandaloneHost_Task, a datastore shared by all hosts,
// CreateFolder, CreateVM_Task on the VM's host and pool, PowerOnVM_Task
// (and SuspendVM_Task), ReconfigureComputeResource_Task for restart
// priorities.  These calls do not go through the SOAP handler: they are not
// in /operations and not counted.  Host states are set last.
func (p *peer) buildLab(est *labEstate, dsDir string) error {
	ctx := context.Background()
	dcs := simulator.Map.All("Datacenter")
	if len(dcs) != 1 {
		return fmt.Errorf("-lab: want one datacenter, the model has %d", len(dcs))
	}
	dc := object.NewDatacenter(p.client, dcs[0].Reference())
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	// wait(what)(task, err): the task's result
	wait := func(what string) func(*object.Task, error) (types.AnyType, error) {
		return func(task *object.Task, err error) (types.AnyType, error) {
			if err != nil {
				return nil, fmt.Errorf("-lab: %s: %v", what, err)
			}
			info, err := task.WaitForResult(ctx, nil)
			if err != nil {
				return nil, fmt.Errorf("-lab: %s: %v", what, err)
			}
			return info.Result, nil
		}
	}
	type placed struct {
		lh      labHost
		host    *object.HostSystem
		pool    *object.ResourcePool
		cluster *object.ClusterComputeResource
	}
	var all []placed
	for _, c := range est.clusters {
		cluster, err := folders.HostFolder.CreateCluster(ctx, vsphereName(c.name), types.ClusterConfigSpecEx{})
		if err != nil {
			return fmt.Errorf("-lab: cluster %q: %v", c.name, err)
		}
		pool, err := cluster.ResourcePool(ctx)
		if err != nil {
			return err
		}
		for _, lh := range c.hosts {
			spec := types.HostConnectSpec{HostName: vsphereName(lh.name)}
			res, err := wait(fmt.Sprintf("host %q", lh.name))(cluster.AddHost(ctx, spec, true, nil, nil))
			if err != nil {
				return err
			}
			all = append(all, placed{lh, object.NewHostSystem(p.client, res.(types.ManagedObjectReference)), pool, cluster})
		}
	}
	for _, lh := range est.hosts {
		spec := types.HostConnectSpec{HostName: vsphereName(lh.name)}
		res, err := wait(fmt.Sprintf("host %q", lh.name))(folders.HostFolder.AddStandaloneHost(ctx, spec, true, nil, nil))
		if err != nil {
			return err
		}
		host := object.NewHostSystem(p.client, res.(types.ManagedObjectReference))
		pool, err := host.ResourcePool(ctx)
		if err != nil {
			return err
		}
		all = append(all, placed{lh, host, pool, nil})
	}
	// One datastore on every host, as the generated model has: their VMs'
	// files are on storage they all reach (a VM can be registered on any).
	const ds = "LocalDS_0"
	for _, pl := range all {
		dss, err := pl.host.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return err
		}
		if _, err := dss.CreateLocalDatastore(ctx, ds, dsDir); err != nil {
			return fmt.Errorf("-lab: datastore on %q: %v", pl.lh.name, err)
		}
	}
	dirs := map[string]bool{}
	n := 0
	for _, pl := range all {
		var das []types.ClusterDasVmConfigSpec
		for _, v := range pl.lh.vms {
			n++
			folder := folders.VmFolder
			for _, part := range labFolder(v.folder) {
				if folder, err = p.childFolder(folder.Reference(), part); err != nil {
					return fmt.Errorf("-lab: folder %q: %v", v.folder, err)
				}
			}
			name := vsphereName(v.name)
			// The VM's directory on the datastore, named after the VM as
			// vCenter does ("name (1)" for the second of a name, as the
			// simulator does); a name the file system cannot take gets vm-N.
			stem := name
			if stem == "." || stem == ".." || len(stem) > 200 {
				stem = fmt.Sprintf("vm-%d", n)
			}
			dir := stem
			for i := 0; dirs[dir]; i++ {
				dir = fmt.Sprintf("%s (%d)", stem, i)
			}
			dirs[dir] = true
			vmx := fmt.Sprintf("[%s] %s/%s.vmx", ds, dir, stem)
			var devices object.VirtualDeviceList
			scsi, _ := devices.CreateSCSIController("pvscsi")
			ide, _ := devices.CreateIDEController()
			cdrom, _ := devices.CreateCdrom(ide.(*types.VirtualIDEController))
			disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
				fmt.Sprintf("[%s] %s/%s.vmdk", ds, dir, stem))
			disk.CapacityInKB = 1024
			nic := esx.EthernetCard // "VM Network"
			devices = append(devices, scsi, cdrom, disk, &nic)
			config := types.VirtualMachineConfigSpec{
				Name:     name,
				GuestId:  string(types.VirtualMachineGuestOsIdentifierOtherGuest),
				Files:    &types.VirtualMachineFileInfo{VmPathName: vmx},
				MemoryMB: int64(v.memoryMB),
				NumCPUs:  v.cpus,
				Uuid:     strings.ToLower(v.uuid),
			}
			if config.DeviceChange, err = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd); err != nil {
				return err
			}
			what := fmt.Sprintf("VM %q on host %q", v.name, pl.lh.name)
			res, err := wait(what)(folder.CreateVM(ctx, config, pl.pool, pl.host))
			if err != nil {
				return err
			}
			ref := res.(types.ManagedObjectReference)
			id := ref.Value
			p.setVMFlags(id, func(f *vmFlags) {
				f.ignoreShutdown = !v.graceful
				f.hung = v.heartbeat == "lost"
				if v.heartbeat == "none" {
					no := false
					f.tools = &no // Tools not installed (the simulator's toolsNotInstalled stays)
				}
			})
			vm := object.NewVirtualMachine(p.client, ref)
			if v.power != "stopped" {
				if _, err := wait(what + ": power on")(vm.PowerOn(ctx)); err != nil {
					return err
				}
			}
			if v.power == "suspended" {
				if _, err := wait(what + ": suspend")(vm.Suspend(ctx)); err != nil {
					return err
				}
			}
			if v.priority != 0 {
				das = append(das, types.ClusterDasVmConfigSpec{
					ArrayUpdateSpec: types.ArrayUpdateSpec{Operation: types.ArrayUpdateOperationAdd},
					Info: &types.ClusterDasVmConfigInfo{Key: ref,
						DasSettings: &types.ClusterDasVmSettings{RestartPriority: restartPriority[v.priority]}},
				})
			}
		}
		if len(das) > 0 {
			_, err := wait(fmt.Sprintf("restart priorities on host %q", pl.lh.name))(
				pl.cluster.Reconfigure(ctx, &types.ClusterConfigSpecEx{DasVmConfigSpec: das}, true))
			if err != nil {
				return err
			}
		}
	}
	p.labHosts = nil
	for _, pl := range all {
		p.labHosts = append(p.labHosts, labHostState{pl.host.Reference(), pl.lh.state})
	}
	return nil
}

type labHostState struct {
	ref   types.ManagedObjectReference
	state string
}

// applyLabHostStates sets the lab hosts' states, once their VMs are up
// (the existing /host/{h}/maintenance and /connection semantics).
func (p *peer) applyLabHostStates() error {
	for _, hs := range p.labHosts {
		h, ok := simulator.Map.Get(hs.ref).(*simulator.HostSystem)
		if !ok {
			return fmt.Errorf("-lab: host %s is gone", hs.ref.Value)
		}
		var err error
		switch hs.state {
		case "maintenance":
			p.setMaintenance(h, true)
		case "disconnected":
			err = p.setHostConnection(h, "disconnected")
		case "not_responding":
			err = p.setHostConnection(h, "notResponding")
		}
		if err != nil {
			return fmt.Errorf("-lab: host %s: %v", h.Name, err)
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// startup

// applyNames applies -names: {"vm": "new name"} or {"vm": {"name": "...", "folder": "a/b"}}.
func (p *peer) applyNames(spec string) error {
	if spec == "" {
		return nil
	}
	data := []byte(spec)
	if strings.HasPrefix(spec, "@") {
		var err error
		if data, err = ioutil.ReadFile(spec[1:]); err != nil {
			return err
		}
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("-names: %v", err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	// resolve all VMs first, so that renames do not interfere with look-ups
	vms := map[string]*simulator.VirtualMachine{}
	for _, k := range keys {
		vm, err := findVM(k)
		if err != nil {
			return fmt.Errorf("-names: %v", err)
		}
		vms[k] = vm
	}
	for _, k := range keys {
		var e struct {
			Name   string  `json:"name"`
			Folder *string `json:"folder"`
		}
		if err := json.Unmarshal(m[k], &e.Name); err != nil {
			if err := json.Unmarshal(m[k], &e); err != nil {
				return fmt.Errorf("-names: %q: want a string or {\"name\",\"folder\"}", k)
			}
		}
		if e.Folder != nil {
			if err := p.move(vms[k], *e.Folder); err != nil {
				return fmt.Errorf("-names: %q: %v", k, err)
			}
		}
		if e.Name != "" {
			if err := p.rename(vms[k], e.Name); err != nil {
				return fmt.Errorf("-names: %q: %v", k, err)
			}
		}
	}
	return nil
}

// quietTLS drops net/http's TLS handshake noise (clients probing the port,
// pyVmomi closing unverified connections) and keeps everything else, e.g.
// "http: panic serving ..." from a simulator crash.
type quietTLS struct{}

func (quietTLS) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("TLS handshake error")) {
		return len(b), nil
	}
	return os.Stderr.Write(b)
}

func rss() string {
	data, err := ioutil.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmRSS:"))
		}
	}
	return "?"
}

func main() {
	start := time.Now()
	var (
		listen        = flag.String("listen", "127.0.0.1:0", "SOAP (HTTPS) listen address")
		controlAddr   = flag.String("control", "127.0.0.1:0", "control API (HTTP) listen address")
		dc            = flag.Int("dc", 1, "datacenters")
		cluster       = flag.Int("cluster", 1, "clusters per datacenter")
		clusterHost   = flag.Int("cluster-host", 3, "hosts per cluster")
		standalone    = flag.Int("host", 1, "standalone hosts per datacenter")
		vms           = flag.Int("vm", 2, "VMs per resource pool (each cluster and each standalone host)")
		ds            = flag.Int("ds", 1, "local datastores per datacenter")
		pool          = flag.Int("pool", 0, "extra (empty) resource pools per cluster")
		autostart     = flag.Bool("autostart", true, "power on the model's VMs")
		username      = flag.String("username", "user", "the only accepted login user name")
		password      = flag.String("password", "pass", "the only accepted login password")
		toolsRunning  = flag.Bool("tools-running", true, "VMware Tools run on powered-on VMs (heartbeat green); false: simulator default (not running)")
		shutdownDelay = flag.Duration("shutdown-delay", 0, "delay between an accepted ShutdownGuest and power-off (0: immediate, simulator behaviour)")
		toolsDelay    = delayFlag{time.Second}
		names         = flag.String("names", "", `JSON (or @file) renaming VMs at start: {"DC0_H0_VM0": "new name", "DC0_C0_RP0_VM0": {"name": "x", "folder": "sub/dir"}}`)
		trace         = flag.Bool("trace", false, "log SOAP traffic to stderr")
		stdinExit     = flag.Bool("exit-on-stdin-eof", false, "exit when stdin is closed (ties the peer to its parent)")
		labFile       = flag.String("lab", "", "JSON file: build the model to this lab estate (clusters, hosts, VMs) instead of -dc/-cluster/-host/-vm; see README")
	)
	flag.Var(&toolsDelay, "tools-start-delay", `time from a VM's power-on until VMware Tools run in its guest (heartbeat gray meanwhile); "never": they never start; 0: at once (simulator behaviour)`)
	flag.Parse()
	log.SetPrefix("vcsim: ")
	simulator.Trace = *trace

	var estate *labEstate
	if *labFile != "" {
		data, err := ioutil.ReadFile(*labFile)
		if err != nil {
			log.Fatalf("-lab: %v", err)
		}
		if estate, err = parseLab(data); err != nil {
			log.Fatal(err)
		}
	}

	// The model keeps datastore files under TMPDIR: give it a private directory.
	tmp, err := ioutil.TempDir("", "vcsim-peer-")
	if err != nil {
		log.Fatal(err)
	}
	_ = os.Setenv("TMPDIR", tmp)

	model := simulator.VPX()
	model.Datacenter = *dc
	model.Cluster = *cluster
	model.ClusterHost = *clusterHost
	model.Host = *standalone
	model.Machine = *vms
	model.Datastore = *ds
	model.Pool = *pool
	model.Autostart = *autostart
	if estate != nil {
		// one empty datacenter; buildLab fills it
		model.Datacenter, model.Cluster, model.ClusterHost, model.Host = 1, 0, 0, 0
		model.Machine, model.Datastore, model.Pool, model.Portgroup = 0, 0, 0, 0
	}

	p := &peer{
		model:         model,
		toolsDefault:  *toolsRunning,
		toolsDelay:    toolsDelay.d,
		shutdownDelay: *shutdownDelay,
		flags:         map[string]*vmFlags{},
		tasks:         map[string]string{},
		unregistered:  map[string]vmIdentity{},
		boots:         map[string]int{},
		toolsPending:  map[string]bool{},
		locks:         map[string]fileLock{},
		truth:         map[string]types.VirtualMachinePowerState{},
		hostDown:      map[string]bool{},
		orphans:       map[string][]orphanVM{},
		disks:         map[string]string{},
		rng:           mrand.New(mrand.NewSource(time.Now().UnixNano())),
		countsByVM:    map[string][]int{},
		countsByIU:    map[string][]int{},
	}
	p.freeze.thaw = make(chan struct{})
	cleanup := func() {
		model.Remove()
		_ = os.RemoveAll(tmp)
	}
	fail := func(err error) {
		cleanup()
		log.Fatal(err)
	}

	if err := model.Create(); err != nil {
		fail(err)
	}
	// Create replaces simulator.Map: register the watcher on the new registry.
	simulator.Map.AddHandler(&watcher{Self: types.ManagedObjectReference{Type: "VcsimPeerWatcher", Value: "watcher"}, p: p})

	svc := model.Service
	svc.TLS = new(tls.Config)
	svc.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(*username, *password)}

	// Fetch fix (see peerPC)
	pcRef := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance).Content.PropertyCollector
	pc := &peerPC{}
	pc.Self = pcRef
	simulator.Map.Put(pc)

	if p.client, err = vim25.NewClient(context.Background(), svc); err != nil {
		fail(err)
	}

	// Hook objects live in a registry of their own (see hookPath); per-VM
	// hooks are created when a call is first routed to them.
	p.hooks = simulator.NewRegistry()
	p.hooks.Path = hookPath
	p.hooks.Put(&searchHook{Self: types.ManagedObjectReference{Type: searchHookType, Value: searchHookValue}, p: p})
	if em := p.client.ServiceContent.EventManager; em != nil {
		p.hooks.Put(&eventHook{Self: types.ManagedObjectReference{Type: eventHookType, Value: em.Value}, p: p})
	}
	if si := p.client.ServiceContent.SearchIndex; si == nil || si.Value != searchHookValue {
		fail(fmt.Errorf("unexpected SearchIndex reference %v", si))
	}

	if estate != nil {
		dsDir, err := ioutil.TempDir(tmp, "lab-LocalDS_0-")
		if err != nil {
			fail(err)
		}
		if err := p.buildLab(estate, dsDir); err != nil {
			fail(err)
		}
	}

	// guest state of the model's VMs
	for _, vm := range allVMs() {
		simulator.Map.WithLock(vm, func() {
			if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn && vm.Runtime.BootTime == nil {
				boot := vm.Summary.Runtime.BootTime // the only one govmomi 0.24 sets
				if boot == nil {
					now := time.Now().UTC()
					boot = &now
				}
				vm.Runtime.BootTime, vm.Summary.Runtime.BootTime = boot, boot
			}
			if vm.GuestHeartbeatStatus == "" {
				simulator.Map.Update(vm, []types.PropertyChange{{Name: "guestHeartbeatStatus", Val: types.ManagedEntityStatusGray}})
			}
			if p.toolsWanted(vm.Self.Value) {
				// the model's VMs have been up for a while: Tools run already
				p.cancelTools(vm.Self.Value)
				simulator.Map.Update(vm, p.guestChangesFor(vm.Self.Value, vm.Runtime.PowerState, true))
			}
			p.lockUpdate(&vm.VirtualMachine, vm.Runtime.PowerState)
		})
	}
	if err := p.applyNames(*names); err != nil {
		fail(err)
	}
	if err := p.applyLabHostStates(); err != nil {
		fail(err)
	}

	// NewServer sets up the SOAP mux, the login check (svc.Listen.User) and a
	// TLS certificate; we serve that mux on our own listener, behind the
	// request rewriter, and close the simulator's own listener.
	inner := svc.NewServer()
	certs := inner.TLS.Certificates
	svc.RegisterSDK(p.hooks) // on svc.ServeMux, at hookPath
	mux := svc.ServeMux
	inner.Close()

	p.soap = &soapEndpoint{
		addr: *listen,
		tls: &tls.Config{
			Certificates: certs,
			ClientAuth:   tls.RequestClientCert, // LoginExtensionByCertificate
			NextProtos:   []string{"http/1.1"},
		},
		handler: p.soapHandler(mux),
		errLog:  log.New(quietTLS{}, "vcsim: ", log.LstdFlags),
	}
	p.soap.mu.Lock()
	err = p.soap.listen()
	host := p.soap.addr
	p.soap.mu.Unlock()
	if err != nil {
		fail(err)
	}
	simulator.Map.SessionManager().ServiceHostName = host
	sdkURL := &url.URL{Scheme: "https", Host: host, Path: "/sdk", User: url.UserPassword(*username, *password)}

	cln, err := net.Listen("tcp", *controlAddr)
	if err != nil {
		fail(err)
	}
	ctlSrv := &http.Server{Handler: http.HandlerFunc(p.control)}
	go func() { _ = ctlSrv.Serve(cln) }()

	nvm, nhost := len(allVMs()), len(allHosts())
	log.Printf("ready in %.2fs: %d hosts, %d VMs, RSS %s", time.Since(start).Seconds(), nhost, nvm, rss())

	line, _ := json.Marshal(struct {
		URL     string `json:"url"`
		Control string `json:"control"`
	}{sdkURL.String(), "http://" + cln.Addr().String()})
	fmt.Fprintln(os.Stdout, string(line))
	_ = os.Stdout.Sync()

	done := make(chan os.Signal, 2)
	signal.Notify(done, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	if *stdinExit {
		go func() {
			_, _ = io.Copy(ioutil.Discard, os.Stdin)
			done <- syscall.SIGTERM
		}()
	}
	sig := <-done
	log.Printf("%v: shutting down", sig)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = ctlSrv.Shutdown(ctx)
	p.soap.mu.Lock()
	p.soap.close()
	p.soap.mu.Unlock()
	cleanup()
}
