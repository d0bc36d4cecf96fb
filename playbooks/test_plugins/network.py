"""Jinja tests for the roles' input checks: IP addresses and networks,
parsed by Python's ipaddress module rather than matched by a pattern, so that
999.1.1.1 or 10.0.0.0/33 is refused before the host changes, not by
PostgreSQL, nftables or nginx halfway through a run.

    postgresql_app_networks | reject('ip_network') | list   # the bad items
    firewall_ssh_sources | reject('ip_address') | reject('ip_network') | list
    client_address is in_networks(firewall_ssh_sources)

Loaded from beside the playbooks (Ansible looks there) and through
ansible.cfg's test_plugins for other uses of the roles.
"""
import ipaddress


def ip_address(value):
    """An IPv4 or IPv6 address, without a prefix length."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def ip_network(value):
    """A network in CIDR notation (address/prefix length) whose host bits are
    zero: 10.0.0.0/24 or 10.0.0.5/32, not 10.0.0.5/24, which PostgreSQL and
    nftables would each read their own way."""
    text = str(value)
    if "/" not in text:
        return False
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def in_networks(value, sources):
    """An address that one of `sources` (addresses or CIDR networks) holds."""
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        return False
    # An IPv4 client on a dual-stack socket may be written ::ffff:10.0.0.5.
    candidates = {address, getattr(address, "ipv4_mapped", None) or address}
    for source in sources:
        try:
            network = ipaddress.ip_network(str(source), strict=False)
        except ValueError:
            continue
        if any(candidate in network for candidate in candidates):
            return True
    return False


class TestModule:
    def tests(self):
        return {"ip_address": ip_address, "ip_network": ip_network, "in_networks": in_networks}
