"""The array engine: members, superblocks, allocation map, commits, reads, repair.

Nouns:

- member: one image file or block device; `Member` does its I/O.
- role: a member's position in the stripe layout (0 .. member_count - 1).
- superblock: a member's header (three copies); the newest valid one wins.
- allocation map: per stripe, whether it is in use, the commit that wrote it
  and a checksum of each strip.
- commit: data and map durable everywhere, then superblocks with the next
  event counter.
- stale member: marked failed or absent by the newest member table, or one
  that missed commits; it is never read.
- job: a rebuild, resync or scrub walking the allocated stripes.
"""

from raidd.array.admin import (
    AutoRebuild,
    add_spare,
    fail_member,
    re_add,
    remove_member,
    replace_member,
    resume_job,
)
from raidd.array.array import Array, AssemblyReport, CommitResult
from raidd.array.assemble import assemble, probe
from raidd.array.create import CreatedArray, create_array
from raidd.array.faulty import FaultyMember
from raidd.array.jobs import Job, JobResult, Progress, Rebuild
from raidd.array.member import Member, open_member
from raidd.array.reserve import Reserve
from raidd.array.scrub import Scrub

__all__ = [
    "Array",
    "AssemblyReport",
    "AutoRebuild",
    "CommitResult",
    "CreatedArray",
    "FaultyMember",
    "Job",
    "JobResult",
    "Member",
    "Progress",
    "Rebuild",
    "Reserve",
    "Scrub",
    "add_spare",
    "assemble",
    "create_array",
    "fail_member",
    "open_member",
    "probe",
    "re_add",
    "remove_member",
    "replace_member",
    "resume_job",
]
