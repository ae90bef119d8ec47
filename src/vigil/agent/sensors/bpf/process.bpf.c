// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0-only)
/* Vigil process telemetry: exec, fork and exit of processes, described in the kernel.
 *
 * tp_btf programs need neither tracefs nor bpffs, and read the task as the scheduler sees it, so
 * parent, credentials, executable path and argv come with the event: no /proc read races the
 * process's exit. Each record is a fixed header (struct vigil_event) followed by a packed tail of
 * exe_len + argv_len + cwd_len bytes; the agent decodes it in vigil.agent.sensors.bpf_events,
 * which must change with this layout.
 */
#include "vigil.bpf.h"

#define VIGIL_EXEC 1
#define VIGIL_FORK 2
#define VIGIL_EXIT 3

#define VIGIL_ARGV_TRUNCATED 1
#define VIGIL_EXE_TRUNCATED 2
#define VIGIL_CWD_TRUNCATED 4

/* Paths are written leaf first, one NUL-terminated name per component ("true\0bin\0usr\0"):
 * the verifier accepts appending at a bounded offset, not prepending. */
#define NAME_BYTES 256          /* NAME_MAX + 1 */
#define PATH_BYTES 1024         /* a path stops growing once it reaches this */
#define PATH_REGION (PATH_BYTES + NAME_BYTES)
#define PATH_COMPONENTS 40      /* names plus mount crossings */
#define ARGV_BYTES 4096

/* An open file as the inode behind it: the agent tells a pipe (and which) from a tty, a socket or a file by
 * the mode's type bits. */
struct vigil_fd {
	__u64 ino;
	__u32 rdev;     /* the kernel's dev_t (major << 20 | minor), for character devices */
	__u16 mode;     /* i_mode; 0 when the fd is not open */
	__u16 pad;
};

struct vigil_event {
	__u64 ts_ns;    /* bpf_ktime_get_boot_ns() at the event */
	__u64 start_ns; /* the process's start, CLOCK_BOOTTIME ns */
	__u32 kind;
	__u32 pid;      /* tgid */
	__u32 tid;
	__u32 ppid;     /* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 exit_code; /* wait(2) status, exits only */
	__u32 flags;
	__u16 exe_len;
	__u16 argv_len;
	__u16 cwd_len;
	__u16 reserved;
	char comm[16];
	__u32 pad;
	/* Execs and exits only (zero for forks): the process group and what fds 0, 1 and 2 are, so the agent
	 * can join the members of one pipeline (vigil.agent.sensors.pipeline). */
	__u32 pgid;     /* as the initial pid namespace numbers it */
	__u32 pad2;
	struct vigil_fd fds[3];
};

struct exec_record {
	struct vigil_event hdr;
	char tail[PATH_REGION + ARGV_BYTES + PATH_REGION];
};

/* Its pages count in the agent's RSS (mapped twice for wrap-around) from the start, used or not: 2 MiB holds
 * about a second of execs, forks and exits at 2,400 execs/s (bench/sensor.py: none missed), 4 MiB cost 5 MiB
 * more resident memory. A full ring is counted (the dropped map), never silent. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 2 << 20);
} events SEC(".maps");

/* An exec record is too large for the BPF stack: it is assembled here, then copied out at its size. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_record);
} scratch SEC(".maps");

static __always_inline void fill_header(struct vigil_event *e, __u32 kind, struct task_struct *task)
{
	e->ts_ns = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = BPF_CORE_READ(task, pid);
	e->ppid = BPF_CORE_READ(task, real_parent, tgid);
	e->start_ns = BPF_CORE_READ(task, group_leader, start_boottime);
	e->uid = BPF_CORE_READ(task, cred, uid.val);
	e->gid = BPF_CORE_READ(task, cred, gid.val);
	e->euid = BPF_CORE_READ(task, cred, euid.val);
	e->exit_code = 0;
	e->flags = 0;
	e->exe_len = 0;
	e->argv_len = 0;
	e->cwd_len = 0;
	e->reserved = 0;
	e->pad = 0;
	e->pgid = 0;
	e->pad2 = 0;
	__builtin_memset(&e->fds, 0, sizeof(e->fds));
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
}

/* The process group and stdin/stdout/stderr: at exec the shell has already set both up for the new
 * program, and at exit (before exit_files) a forked shell that ran a builtin still holds its pipe. */
static __always_inline void fill_stdio(struct vigil_event *e, struct task_struct *task)
{
	e->pgid = BPF_CORE_READ(task, signal, pids[PIDTYPE_PGID], numbers[0].nr);
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	struct file **fd = BPF_CORE_READ(fdt, fd);

	for (int i = 0; i < 3; i++) {
		struct file *f = NULL;

		if (i >= max)
			break;
		bpf_probe_read_kernel(&f, sizeof(f), &fd[i]);
		if (!f)
			continue;
		struct inode *inode = BPF_CORE_READ(f, f_inode);
		e->fds[i].ino = BPF_CORE_READ(inode, i_ino);
		e->fds[i].rdev = BPF_CORE_READ(inode, i_rdev);
		e->fds[i].mode = BPF_CORE_READ(inode, i_mode);
	}
}

/* One walk of a path towards the root, one component (or mount crossing) per bpf_loop step: the
 * verifier checks the step once, where an open-coded loop over two paths is too complex for it. */
struct walk {
	struct dentry *dentry;
	struct mount *mnt;
	__u32 base; /* where the path starts in the record's tail */
	__u32 off;  /* bytes written so far */
	__u32 truncated;
};

static long walk_step(__u32 i, struct walk *w)
{
	struct dentry *dentry = w->dentry;
	struct mount *mnt = w->mnt;
	struct dentry *root = BPF_CORE_READ(mnt, mnt.mnt_root);
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);

	if (dentry == root) {
		struct mount *up = BPF_CORE_READ(mnt, mnt_parent);

		if (up == mnt)
			return 1; /* the root of the root mount */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = up;
		return 0;
	}
	if (dentry == parent)
		return 1; /* the root of a filesystem that is not mounted here */
	if (w->off >= PATH_BYTES) {
		w->truncated = 1;
		return 1;
	}
	__u32 zero = 0;
	struct exec_record *r = bpf_map_lookup_elem(&scratch, &zero);
	__u32 pos = w->base + w->off;

	if (!r || pos > PATH_REGION + ARGV_BYTES + PATH_BYTES)
		return 1;
	const unsigned char *name = BPF_CORE_READ(dentry, d_name.name);
	long n = bpf_probe_read_kernel_str(r->tail + pos, NAME_BYTES, name);

	if (n <= 0)
		return 1;
	w->off += n;
	w->dentry = parent;
	return 0;
}

/* Writes the names of path's components at tail[base], leaf first; returns the bytes written. */
static __always_inline __u32 walk_path(struct path *path, __u32 base, __u32 *flags, __u32 truncated)
{
	struct walk w = {
		.dentry = BPF_CORE_READ(path, dentry),
		.mnt = container_of(BPF_CORE_READ(path, mnt), struct mount, mnt),
		.base = base,
	};

	if (bpf_loop(PATH_COMPONENTS, walk_step, &w, 0) == PATH_COMPONENTS || w.truncated)
		*flags |= truncated;
	return w.off > PATH_REGION ? PATH_REGION : w.off;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(vigil_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 zero = 0;
	struct exec_record *r = bpf_map_lookup_elem(&scratch, &zero);

	if (!r)
		return 0;
	fill_header(&r->hdr, VIGIL_EXEC, task);
	fill_stdio(&r->hdr, task);

	struct path exe_path;
	BPF_CORE_READ_INTO(&exe_path, task, mm, exe_file, f_path);
	__u32 exe_len = walk_path(&exe_path, 0, &r->hdr.flags, VIGIL_EXE_TRUNCATED);
	if (exe_len > PATH_REGION)
		exe_len = PATH_REGION;

	unsigned long arg_start = BPF_CORE_READ(task, mm, arg_start);
	unsigned long arg_end = BPF_CORE_READ(task, mm, arg_end);
	__u32 argv_len = 0;
	if (arg_end > arg_start) {
		unsigned long want = arg_end - arg_start;

		if (want > ARGV_BYTES) {
			want = ARGV_BYTES;
			r->hdr.flags |= VIGIL_ARGV_TRUNCATED;
		}
		argv_len = want;
		if (bpf_probe_read_user(r->tail + exe_len, argv_len & (2 * ARGV_BYTES - 1), (void *)arg_start))
			argv_len = 0;
	}
	if (argv_len > ARGV_BYTES)
		argv_len = ARGV_BYTES;

	struct path cwd;
	BPF_CORE_READ_INTO(&cwd, task, fs, pwd);
	__u32 cwd_len = walk_path(&cwd, exe_len + argv_len, &r->hdr.flags, VIGIL_CWD_TRUNCATED);
	if (cwd_len > PATH_REGION)
		cwd_len = PATH_REGION;

	r->hdr.exe_len = exe_len;
	r->hdr.argv_len = argv_len;
	r->hdr.cwd_len = cwd_len;
	__u64 size = sizeof(r->hdr) + exe_len + argv_len + cwd_len;
	if (size > sizeof(*r))
		return 0;
	if (bpf_ringbuf_output(&events, r, size, 0))
		count_drop();
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(vigil_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0; /* a new thread, not a process */
	struct vigil_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop();
		return 0;
	}
	fill_header(e, VIGIL_FORK, child);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(vigil_exit, struct task_struct *task, bool group_dead)
{
	if (!group_dead)
		return 0; /* a thread ended, the process lives on */
	struct vigil_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop();
		return 0;
	}
	fill_header(e, VIGIL_EXIT, task);
	fill_stdio(e, task);
	/* With exit_group() or a fatal signal the whole group's status is what a waiter sees. */
	struct signal_struct *sig = BPF_CORE_READ(task, signal);
	if (BPF_CORE_READ(sig, flags) & 0x00000004 /* SIGNAL_GROUP_EXIT */)
		e->exit_code = BPF_CORE_READ(sig, group_exit_code);
	else
		e->exit_code = BPF_CORE_READ(task, exit_code);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
