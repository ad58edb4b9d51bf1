"""The graph builder: one process keeps every level's live graph for all web workers.

It follows the collectors' change notices, re-reads only the hosts that
reported (``fleet``), updates each level's graph (``levels``: a full build when
the topology changed, only the edges whose flows changed otherwise), stores a
snapshot and the diffs since in Redis (``keys``) and publishes each diff once
to the Channels group of its level (``builder``). Web workers relay
(``webapp.maps.relay``). One builder is active at a time (``webapp.lease``);
a standby takes over from the stored snapshot, so open maps see no reload.
"""
