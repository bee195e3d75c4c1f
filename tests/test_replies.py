"""Tests of analysis.reference.replies.parse_replies on real reply/Detail/NDR texts from public sources."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.reference.replies import REPLY_COLUMNS, parse_replies

CORPUS = Path(__file__).parent / "data" / "replies_corpus.csv"

QA = "https://learn.microsoft.com/en-us/answers/questions/"
SISIMAI = "sisimai/go-sisimai reason/02-includedin_test.go (BSD-2-Clause)"
NDR_PAGE = (
    "MicrosoftDocs/OfficeDocs-Exchange (fork x13-me/OfficeDocs-Exchange) Exchange/ExchangeOnline/"
    "mail-flow-best-practices/non-delivery-reports-in-exchange-online/non-delivery-reports-in-exchange-online.md"
)
TLS_BLOG = (
    "Tech Community blog 'TLS Certificates in Exchange Hybrid - Common Issues & How to Fix them' "
    "(techcommunity.microsoft.com/blog/exchange/.../4420592), "
    "as quoted in shared/reference/exchange-formats.md §3"
)
STEINMETZ = "forum thread 'Some email being rejected' (General Help, rsteinmetz70112, 2020-12-10)"
ERRORRETRY = "forum thread post by jelletje18, 2019-11-20 (quoted in shared/reference/exchange-formats.md §3)"
LORE = "https://lore.kernel.org/linux-scsi/ucn5winjeqnixycuxldp3wgysrasrah4ie5egs4vo4prvy7e5c@6ef4y2gqqd7x/"
KB_4051498 = (
    "MicrosoftDocs/SupportArticles-docs 'Outbound email messages are not sent on the Exchange Hub Transport "
    "or Edge server' (KB 4051498)"
)
KB_979174 = (
    "MicrosoftDocs/SupportArticles-docs '454 4.7.0 Temporary authentication failure in Exchange Server' "
    "(KB 979174)"
)

KB_2989382 = (
    "MicrosoftDocs/SupportArticles-docs Exchange/ExchangeHybrid/email-delivery/"
    "cannot-receive-mail-with-new-certificate.md (KB 2989382)"
)
P5_EXCHANGE2007 = "sisimai/p5-sisimai lib/Sisimai/Lhost/Exchange2007.pm (BSD-2-Clause)"

# (reply text verbatim, source, expected fields); fields not listed must be NA
CASES: list[tuple[str, str, dict[str, object]]] = [
    (
        'Reason: [{LED=451-4.7.23 Message deferred - unable to verify SPF policy for 451 4.7.23 '
        'chromaderm.com.au. IB305 '
        'i{2b0c499b-c839-43d2-9c76-dda19649fe67}};{MSG=};{FQDN=extmail.bigpond.com};{IP=203.42.22.'
        '10};{LRT=1/21/2025 3:45:12 AM}]. OutboundProxyTargetIP: 203.42.22.10. '
        'OutboundProxyTargetHostName: extmail.bigpond.com',
        QA + '2149611/sending-e-mails-to-bigpond-com-customers-bound-bac',
        {
            'smtp_code': 451,
            'enhanced_code': '4.7.23',
            'outer_code': 451,
            'outer_enhanced_code': '4.7.23',
            'led': '451-4.7.23 Message deferred - unable to verify SPF policy for 451 4.7.23 '
                   'chromaderm.com.au. IB305 i{2b0c499b-c839-43d2-9c76-dda19649fe67}',
            'remote_host': 'extmail.bigpond.com',
            'remote_ip': '203.42.22.10',
            'last_retry': '1/21/2025 3:45:12 AM',
        },
    ),
    (
        'Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 TLS '
        'negotiation failed with error SocketError] [LastAttemptedServerName=xxx] '
        '[LastAttemptedIP=xxx] [SmtpSecurity=-2;-2] '
        '[DM6NAM12FT012.eop-nam12.prod.protection.outlook.com 2023-03-07T18:46:06.378Z '
        '08DB1DF24DB12D84]};{MSG=4. OutboundProxyTargetIP: xxx. OutboundProxyTargetHostName: xxx',
        QA + '1187616/lost-connectivity-between-exchange-2013-on-prem-an',
        {
            'smtp_code': 451,
            'enhanced_code': '4.4.0',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': '451 4.4.0 TLS negotiation failed with error SocketError',
            'led': '450 4.4.317 Cannot connect to remote server [Message=451 4.4.0 TLS negotiation '
                   'failed with error SocketError] [LastAttemptedServerName=xxx] '
                   '[LastAttemptedIP=xxx] [SmtpSecurity=-2;-2] '
                   '[DM6NAM12FT012.eop-nam12.prod.protection.outlook.com 2023-03-07T18:46:06.378Z '
                   '08DB1DF24DB12D84]',
            'exo_host': 'DM6NAM12FT012.eop-nam12.prod.protection.outlook.com',
        },
    ),
    (
        'Reason: [{LED=450 4.4.316 Connection refused [Message=Socket error code 10061].',
        QA + '1377740/issue-receiving-mail-from-microsft365-in-exchange',
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.316',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.316',
            'remote_reply': 'Socket error code 10061',
            'led': '450 4.4.316 Connection refused [Message=Socket error code 10061].',
        },
    ),
    (
        'Reason: [{LED=250 2.1.5 RESOLVER.OOF.IntToExt; handled internal OOF addressed to external '
        'recipient};{MSG=};{FQDN=};{IP=};{LRT=}]',
        QA + '176723/out-of-office-messages-drop-in-exchange-online-o36',
        {
            'smtp_code': 250,
            'enhanced_code': '2.1.5',
            'outer_code': 250,
            'outer_enhanced_code': '2.1.5',
            'led': '250 2.1.5 RESOLVER.OOF.IntToExt; handled internal OOF addressed to external '
                   'recipient',
        },
    ),
    (
        'Reason: [{LED=250 2.1.5 RESOLVER.OOF.IntToExt    ',
        QA + '176723/out-of-office-messages-drop-in-exchange-online-o36',
        {
            'smtp_code': 250,
            'enhanced_code': '2.1.5',
            'outer_code': 250,
            'outer_enhanced_code': '2.1.5',
            'led': '250 2.1.5 RESOLVER.OOF.IntToExt',
        },
    ),
    (
        'Reason: [{LED=450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch '
        'Expected Subject: *.contoso.com. Presented Subject: CN=ExchangeServer01. Thumbprint: '
        'D0AC2FC63B9C5798828B45D849BE8D33.] [LastAttemptedServerName=mail.contoso.com] '
        '[LastAttemptedIP=72.x.x.x.:25] [SmtpSecurity=-1;-1] [BN7… OutboundProxyTargetIP: '
        '72.x.x.x. OutboundProxyTargetHostName: mail.contoso.com',
        TLS_BLOG,
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.317',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': 'SubjectMismatch Expected Subject: *.contoso.com. Presented Subject: '
                            'CN=ExchangeServer01. Thumbprint: D0AC2FC63B9C5798828B45D849BE8D33.',
            'led': '450 4.4.317 Cannot connect to remote server [Message=SubjectMismatch Expected '
                   'Subject: *.contoso.com. Presented Subject: CN=ExchangeServer01. Thumbprint: '
                   'D0AC2FC63B9C5798828B45D849BE8D33.] [LastAttemptedServerName=mail.contoso.com] '
                   '[LastAttemptedIP=72.x.x.x.:25] [SmtpSecurity=-1;-1] [BN7… '
                   'OutboundProxyTargetIP: 72.x.x.x. OutboundProxyTargetHostName: mail.contoso.com',
            'remote_host': 'mail.contoso.com',
        },
    ),
    (
        'LED=450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required '
        'to send mail]',
        TLS_BLOG,
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail',
            'led': 'LED=450 4.4.317 Cannot connect to remote server [Message=451 5.7.3 STARTTLS is '
                   'required to send mail]',
        },
    ),
    (
        'Reason: [{LED=450 4.4.317 Cannot establish session with remote server [Message=451 5.7.3 '
        'STARTTLS is required to send mail]',
        'Microsoft Japan Exchange blog, as quoted in shared/reference/exchange-formats.md §3',
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail',
            'led': '450 4.4.317 Cannot establish session with remote server [Message=451 5.7.3 '
                   'STARTTLS is required to send mail]',
        },
    ),
    (
        "12/9/2020 9:57:15 PM - Server at MN2PR13MB4005.namprd13.prod.outlook.com returned '550 "
        '5.4.317 Message expired, cannot connect to remote server(451 5.7.3 STARTTLS is required '
        "to send mail)'",
        STEINMETZ,
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.317',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail',
            'led': '12/9/2020 9:57:15 PM - Server at MN2PR13MB4005.namprd13.prod.outlook.com '
                   "returned '550 5.4.317 Message expired, cannot connect to remote server(451 "
                   "5.7.3 STARTTLS is required to send mail)'",
        },
    ),
    (
        "12/9/2020 9:47:12 PM - Server at steinmetznet.com (50.251.172.148) returned '450 4.4.317 "
        'Cannot connect to remote server [Message=451 5.7.3 STARTTLS is required to send mail] '
        '[LastAttemptedServerName=steinmetznet.com] [LastAttemptedIP=50.251.172.148:25] '
        '[MW2NAM12FT041.eop-nam12.prod.protection.outlook.com](451 5.7.3 STARTTLS is required to '
        "send mail)'",
        STEINMETZ,
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail',
            'remote_host': 'steinmetznet.com',
            'remote_ip': '50.251.172.148',
            'exo_host': 'MW2NAM12FT041.eop-nam12.prod.protection.outlook.com',
        },
    ),
    (
        '550 5.4.317 Message expired, cannot connect to remote server(451 5.7.3 STARTTLS is '
        'required to send mail)',
        STEINMETZ,
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.317',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail',
            'led': '550 5.4.317 Message expired, cannot connect to remote server(451 5.7.3 '
                   'STARTTLS is required to send mail)',
        },
    ),
    (
        '11/19/2019 5:14:09 PM - Server at VE1EUR03HT058.eop-EUR03.prod.protection.outlook.com '
        "returned '550 5.4.312 Message expired, DNS query failed(ErrorRetry)'",
        ERRORRETRY,
        {
            'smtp_code': 550,
            'enhanced_code': '5.4.312',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.312',
            'remote_reply': 'ErrorRetry',
        },
    ),
    (
        "11/19/2019 5:08:35 PM - Server at example.com (0.0.0.0) returned '450 4.4.312 DNS query "
        'failed [Message=ErrorRetry] [LastAttemptedServerName=example.com] '
        "[AM5EUR03FT022.eop-EUR03.prod.protection.outlook.com](ErrorRetry)'",
        ERRORRETRY,
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.312',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.312',
            'remote_reply': 'ErrorRetry',
            'remote_host': 'example.com',
            'remote_ip': '0.0.0.0',
            'exo_host': 'AM5EUR03FT022.eop-EUR03.prod.protection.outlook.com',
        },
    ),
    (
        "7/7/2026 3:58:12 PM - Server at SJ0PR04MB7504.namprd04.prod.outlook.com returned '550 "
        '5.4.317 Message expired, cannot connect to remote server(Failed to connect. Winsock error '
        "code: 995, Win32 error code: 995)'",
        LORE,
        {
            'smtp_code': 550,
            'enhanced_code': '5.4.317',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.317',
            'remote_reply': 'Failed to connect. Winsock error code: 995, Win32 error code: 995',
        },
    ),
    (
        "7/7/2026 3:48:53 PM - Server at 199.255.45.85 (199.255.45.85) returned '450 4.4.317 "
        'Cannot establish session with remote server [Message=Failed to connect. Winsock error '
        'code: 995, Win32 error code: 995] [LastAttemptedServerName=199.255.45.85] '
        '[LastAttemptedIP=199.255.45.85:25] [SmtpSecurity=-2;-2] '
        '[BL02EPF00046C14.namprd07.prod.outlook.com 2026-07-07T15:48:53.514Z '
        "08DED27250BC5691](Failed to connect. Winsock error code: 995, Win32 error code: 995)'",
        LORE,
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.317',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': 'Failed to connect. Winsock error code: 995, Win32 error code: 995',
            'remote_host': '199.255.45.85',
            'remote_ip': '199.255.45.85',
            'exo_host': 'BL02EPF00046C14.namprd07.prod.outlook.com',
        },
    ),
    (
        'Connection refused [Message=Socket error code 10061]',
        NDR_PAGE,
        {
            'remote_reply': 'Socket error code 10061',
            'led': 'Connection refused [Message=Socket error code 10061]',
        },
    ),
    (
        '550 5.5.0 Requested action not taken: mailbox unavailable',
        NDR_PAGE,
        {
            'smtp_code': 550,
            'enhanced_code': '5.5.0',
            'outer_code': 550,
            'outer_enhanced_code': '5.5.0',
            'led': '550 5.5.0 Requested action not taken: mailbox unavailable',
        },
    ),
    (
        'Access denied, a message sent over IPv6 [2a01:111:f200:2004::240] must pass either SPF or '
        'DKIM validation, this message is not signed',
        NDR_PAGE,
        {
            'led': 'Access denied, a message sent over IPv6 [2a01:111:f200:2004::240] must pass '
                   'either SPF or DKIM validation, this message is not signed',
        },
    ),
    (
        '451 4.4.0 Primary target IP address responded with: "421 4.4.1 Connection timed out." '
        'Attempted failover to alternate host, but that did not succeed. Either there are no '
        'alternate hosts, or delivery failed to all alternate hosts.',
        KB_4051498,
        {
            'smtp_code': 421,
            'enhanced_code': '4.4.1',
            'outer_code': 451,
            'outer_enhanced_code': '4.4.0',
            'remote_reply': '421 4.4.1 Connection timed out.',
        },
    ),
    (
        '451 4.4.0 Primary target IP address responded with: "454 4.7.0 Temporary authentication '
        'failure." Attempted failover to alternate host, but that did not succeed. Either there '
        'are no alternate hosts, or delivery failed to all alternate hosts.',
        KB_979174,
        {
            'smtp_code': 454,
            'enhanced_code': '4.7.0',
            'outer_code': 451,
            'outer_enhanced_code': '4.4.0',
            'remote_reply': '454 4.7.0 Temporary authentication failure.',
        },
    ),
    (
        "550 5.1.0 192.0.2.222 is not allowed to send from <example.net> per it's SPF Record",
        SISIMAI,
        {
            'smtp_code': 550,
            'enhanced_code': '5.1.0',
            'outer_code': 550,
            'outer_enhanced_code': '5.1.0',
        },
    ),
    (
        '451 4.7.650 The mail server [192.0.2.2] has been temporarily rate limited due to IP '
        'reputation.',
        SISIMAI,
        {
            'smtp_code': 451,
            'enhanced_code': '4.7.650',
            'outer_code': 451,
            'outer_enhanced_code': '4.7.650',
        },
    ),
    (
        '421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume '
        'or user complaints',
        SISIMAI,
        {
            'smtp_code': 421,
            'enhanced_code': '4.7.0',
            'outer_code': 421,
            'outer_enhanced_code': '4.7.0',
        },
    ),
    (
        '550 Access from ip address 192.0.2.1 blocked.',
        SISIMAI,
        {
            'smtp_code': 550,
            'outer_code': 550,
        },
    ),
    (
        'Remote host said: 554 INVALID IP FOR SENDING MAIL OF DOMAIN amazonses.com [RCPT_TO]',
        SISIMAI,
        {
            'smtp_code': 554,
            'outer_code': 554,
            'remote_reply': '554 INVALID IP FOR SENDING MAIL OF DOMAIN amazonses.com [RCPT_TO]',  # qmail wrapper
        },
    ),
    (
        '#550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient ##',
        SISIMAI,
        {
            'smtp_code': 550,
            'enhanced_code': '5.2.3',
            'outer_code': 550,
            'outer_enhanced_code': '5.2.3',
        },
    ),
    (
        '5.2.3 Message too large',
        SISIMAI,
        {
            'enhanced_code': '5.2.3',
            'outer_enhanced_code': '5.2.3',
        },
    ),
    (
        'permanent failure 5.3.0 - Other mail system problem #5.3.4 message header size exceeds '
        'limit',
        SISIMAI,
        {
            'enhanced_code': '5.3.0',
            'outer_enhanced_code': '5.3.0',
        },
    ),
    (
        '5.1.0 - Unknown address error 550-\'No Such User Here"\' (delivery attempts: 0)',
        SISIMAI,
        {
            'smtp_code': 550,
            'enhanced_code': '5.1.0',
            'outer_code': 550,
            'outer_enhanced_code': '5.1.0',
        },
    ),
    (
        ': 550 5.1.1 <kijitora@example.jp>: Recipient address rejected: User unknown in local '
        'recipient table',
        SISIMAI,
        {
            'smtp_code': 550,
            'enhanced_code': '5.1.1',
            'outer_code': 550,
            'outer_enhanced_code': '5.1.1',
        },
    ),
    (
        'neko.example.com[192.0.2.2]:25: No route to host',
        SISIMAI,
        {},
    ),
    (
        '550 5.7.25 [192.0.2.25] The IP address sending this message does not have a PTR record '
        'setup',
        SISIMAI,
        {
            'smtp_code': 550,
            'enhanced_code': '5.7.25',
            'outer_code': 550,
            'outer_enhanced_code': '5.7.25',
        },
    ),
    (
        '451 4.7.1 <smtp.example.jp[192.0.2.3]>: Client host rejected: Please try again slower',
        SISIMAI,
        {
            'smtp_code': 451,
            'enhanced_code': '4.7.1',
            'outer_code': 451,
            'outer_enhanced_code': '4.7.1',
        },
    ),
    (
        '452 4.3.2 Connection rate limit exceeded. (in reply to MAIL FROM command)',
        SISIMAI,
        {
            'smtp_code': 452,
            'enhanced_code': '4.3.2',
            'outer_code': 452,
            'outer_enhanced_code': '4.3.2',
        },
    ),
    (
        '421 Too many connections',
        SISIMAI,
        {
            'smtp_code': 421,
            'outer_code': 421,
        },
    ),
    (
        'X-Postfix; mail for example.jp loops back to myself',
        SISIMAI,
        {},
    ),
    (
        "9/12/2023 10:39:23 AM - Server at SEYPR06MB5087.apcprd06.prod.outlook.com returned '550 "
        "5.4.300 Message expired -> 421 4.4.2 Connection dropped due to SocketError'",
        QA + '1369059/mail-bouncing-from-ms-exchange-421-4-4-2-connectio',
        {
            'smtp_code': 421,
            'enhanced_code': '4.4.2',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.300',
            'remote_reply': '421 4.4.2 Connection dropped due to SocketError',
        },
    ),
    (
        '9/12/2023 10:38:18 AM - Server at gmail-smtp-in.l.google.com (2a00:1450:4025:401::1a) '
        "returned '421 4.4.2 Connection dropped due to SocketError'",
        QA + '1369059/mail-bouncing-from-ms-exchange-421-4-4-2-connectio',
        {
            'smtp_code': 421,
            'enhanced_code': '4.4.2',
            'outer_code': 421,
            'outer_enhanced_code': '4.4.2',
            'remote_reply': '421 4.4.2 Connection dropped due to SocketError',
            'remote_host': 'gmail-smtp-in.l.google.com',
            'remote_ip': '2a00:1450:4025:401::1a',
        },
    ),
    (
        "[{LRT=15-01-21 23:50:05};{LED=450 4.7.0 Proxy session setup failed on Frontend with '451 "
        '4.4.0 Primary target IP address responded with: "451 4.4.0 Security\n\nstatus '
        'InvalidToken." Attempted failover to alternate host, but that did not succeed. Either '
        'there are no alternate hosts, or delivery failed to all alternate\n\nhosts. The last '
        'endpoint attempted was '
        "2a0X:3cXX:XX2:XXX::XX00:25'};{FQDN=MAILSERVER.DOMAIN.LOCAL};{IP=192.168.12.4}]",
        QA + '234456/exchange-2013-dag-one-in-3-outgoing-mails-to-one-d',
        {
            'smtp_code': 451,
            'enhanced_code': '4.4.0',
            'outer_code': 450,
            'outer_enhanced_code': '4.7.0',
            'remote_reply': '451 4.4.0 Security\n\nstatus InvalidToken.',
            'led': "450 4.7.0 Proxy session setup failed on Frontend with '451 4.4.0 Primary "
                   'target IP address responded with: "451 4.4.0 Security\n\nstatus InvalidToken." '
                   'Attempted failover to alternate host, but that did not succeed. Either there '
                   'are no alternate hosts, or delivery failed to all alternate\n\nhosts. The last '
                   "endpoint attempted was 2a0X:3cXX:XX2:XXX::XX00:25'",
            'remote_host': 'MAILSERVER.DOMAIN.LOCAL',
            'remote_ip': '192.168.12.4',
            'last_retry': '15-01-21 23:50:05',
        },
    ),
    (
        "Remote Server at xxxx.dk (45.100.187.7) returned '400 4.4.7 Message delayed'",
        QA + '112624/exchange-not-receiving-and-sending-emails-from-cer',
        {
            'smtp_code': 400,
            'enhanced_code': '4.4.7',
            'outer_code': 400,
            'outer_enhanced_code': '4.4.7',
            'remote_reply': '400 4.4.7 Message delayed',
            'remote_ip': '45.100.187.7',
        },
    ),
    (
        '6/13/2024 1:19:40 AM - Server at '
        "**********************************************************returned '550 5.4.317 Message "
        'expired, cannot connect to remote server(450-4.4.317 Cannot connect to remote server '
        '[Message=550-5.7.0 Connection refused - IB116. 40.107.107.122 Senderscore too low.',
        QA + '4684354/i-am-trying-to-send-emails-to-bigpond-email-addres',
        {
            'smtp_code': 550,
            'enhanced_code': '5.7.0',
            'outer_code': 550,
            'outer_enhanced_code': '5.4.317',
            'remote_reply': '550-5.7.0 Connection refused - IB116. 40.107.107.122 Senderscore too '
                            'low.',
        },
    ),
    (
        '450 4.4.317 Cannot connect to remote server [Message=CertificateExpired Expected Subject: '
        'email.domain.com. Presented Subject: CN=email.domain.com. Thumbprint: '
        '94E711DD84BC285CD2911DAC3D0C9E3ABB29671E.] [LastAttemptedServerName=email.domain.com] '
        '[LastAttemptedIP=x.147.128.25:25] [SmtpSecurity=-1;-1] '
        '[DM6NAM11FT035.eop-nam11.prod.protection.outlook.com 2025-01-04T16:37:07.429Z '
        '08DD2CB85E2FE9DB]',
        QA + '2195248/cannot-validate-exchange-hybrid-config-due-to-expi',
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.317',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.317',
            'remote_reply': 'CertificateExpired Expected Subject: email.domain.com. Presented '
                            'Subject: CN=email.domain.com. Thumbprint: '
                            '94E711DD84BC285CD2911DAC3D0C9E3ABB29671E.',
            'remote_host': 'email.domain.com',
            'exo_host': 'DM6NAM11FT035.eop-nam11.prod.protection.outlook.com',
        },
    ),
    (
        "8/23/2025 1:12:14 PM - Server at fire.fundersclub.com (13.248.132.87) returned '450 "
        '4.4.316 Connection refused [Message=Socket error code 10061] '
        '[LastAttemptedServerName=fire.fundersclub.com] [LastAttemptedIP=13.248.132.87:25] '
        '[SmtpSecurity=-2;-2] [DB8EUR05FT066.eop-eur05.prod.protection.outlook.com '
        "2025-08-23T13:13:09.045Z 08DDE19030BB9C29](Socket error code 10061)'",
        'https://github.com/FundersClub/fire/issues/441',
        {
            'smtp_code': 450,
            'enhanced_code': '4.4.316',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.316',
            'remote_reply': 'Socket error code 10061',
            'remote_host': 'fire.fundersclub.com',
            'remote_ip': '13.248.132.87',
            'exo_host': 'DB8EUR05FT066.eop-eur05.prod.protection.outlook.com',
        },
    ),
    (
        '451 5.7.3 发送邮件需要 STARTTLS [BJXPR01CA0050.CHNPR01.prod.partner.outlook.cn '
        '2023-07-03T07:17:07.624Z 08DB7565CE20173C]',
        'https://github.com/apache/hertzbeat/issues/1062',
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 451,
            'outer_enhanced_code': '5.7.3',
            'exo_host': 'BJXPR01CA0050.CHNPR01.prod.partner.outlook.cn',
        },
    ),
    (
        "450 4.4.101 Proxy session setup failed on Frontend with '451 4.4.0 Primary target IP "
        'address responded with "451 5.7.3 STARTTLS is required to send mail." Attempted failover '
        'to alternate host, but that did not succeed. Either there are no alternate hosts, or '
        "delivery failed to all alternate hosts. The last endpoint attempted was <endpoint>'.",
        KB_2989382,
        {
            'smtp_code': 451,
            'enhanced_code': '5.7.3',
            'outer_code': 450,
            'outer_enhanced_code': '4.4.101',
            'remote_reply': '451 5.7.3 STARTTLS is required to send mail.',
        },
    ),
    (
        "3/09/2016 8:05:56 PM - Remote Server at mydomain.com (10.1.1.3) returned '550 4.4.7 "
        "QUEUE.Expired; message expired'",
        P5_EXCHANGE2007,
        {
            'smtp_code': 550,
            'enhanced_code': '4.4.7',
            'outer_code': 550,
            'outer_enhanced_code': '4.4.7',
            'remote_reply': '550 4.4.7 QUEUE.Expired; message expired',
            'remote_host': 'mydomain.com',
            'remote_ip': '10.1.1.3',
        },
    ),
    (
        "552-5.2.3 Your message exceeded Google's message size limits. Please visit\n552-5.2.3 "
        'http://support.google.com/mail/bin/answer.py?answer=8770 to review our\n552 5.2.3 size '
        'guidelines. nb4sm10940064wjc.20 - gsmtp',
        'https://github.com/nodemailer/nodemailer/issues/400',
        {
            'smtp_code': 552,
            'enhanced_code': '5.2.3',
            'outer_code': 552,
            'outer_enhanced_code': '5.2.3',
        },
    ),
]


@pytest.mark.parametrize(("text", "source", "expected"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_real_replies(text: str, source: str, expected: dict[str, object]) -> None:
    assert source
    row = parse_replies([text]).iloc[0]
    for column in REPLY_COLUMNS:
        if column == "led" and column not in expected:
            assert row["led"] == text.strip(), column  # no LED grammar: the reply itself, stripped
            continue
        want = expected.get(column)
        got = row[column]
        if want is None:
            assert pd.isna(got), (column, got)
        else:
            assert got == want, (column, got, want)


def test_enough_real_cases() -> None:
    assert len(CASES) >= 30
    assert len({text for text, _, _ in CASES}) == len(CASES)


def test_every_corpus_reply_parses() -> None:
    """All real replies of the labelled corpus parse; a reply that shows a `NNN N.N.N` pair gets a code."""
    corpus = pd.read_csv(CORPUS, dtype=str, keep_default_na=False)
    out = parse_replies(corpus["reply"])
    assert out.index.equals(corpus.index)
    has_pair = corpus["reply"].str.contains(r"(?<![\w.])[245]\d\d[ -]#?[245]\.\d{1,3}\.\d{1,3}", regex=True)
    assert has_pair.sum() > 100
    assert out.loc[has_pair, "smtp_code"].notna().all()
    assert out.loc[has_pair, "outer_code"].notna().all()


def test_series_index_kept_and_dtypes() -> None:
    replies = pd.Series([CASES[0][0], None, CASES[1][0], CASES[0][0], float("nan")], index=[10, 3, 7, 99, -1])
    out = parse_replies(replies)
    assert list(out.index) == [10, 3, 7, 99, -1]
    assert list(out.columns) == list(REPLY_COLUMNS)
    want = {c: str(pd.api.types.pandas_dtype(t)) for c, t in REPLY_COLUMNS.items()}
    assert {c: str(out[c].dtype) for c in out} == want
    assert out.loc[10, "smtp_code"] == out.loc[99, "smtp_code"] == 451
    assert out.loc[[3, -1]].isna().all().all()
    assert out.loc[7, "exo_host"] == "DM6NAM12FT012.eop-nam12.prod.protection.outlook.com"


def test_plain_iterables_and_empty() -> None:
    assert parse_replies([]).shape == (0, len(REPLY_COLUMNS))
    assert parse_replies(pd.Series([], dtype="string")).shape == (0, len(REPLY_COLUMNS))
    out = parse_replies(iter(["", "   ", None, "421 Too many connections"]))
    assert list(out.index) == [0, 1, 2, 3]
    assert out["led"].isna().tolist() == [True, True, True, False]


def test_ipv6_and_port_handling() -> None:
    # the bracketed-IPv6-with-port form of .NET IPEndPoint inside LastAttemptedIP
    text = "[LastAttemptedIP=[2a01:111:f400::5]:25] [LastAttemptedServerName=mx.example.org.]"
    row = parse_replies([text]).iloc[0]
    assert row["remote_ip"] == "2a01:111:f400::5"
    assert row["remote_host"] == "mx.example.org"


def test_unbalanced_message_bracket_stops_at_exo_facts() -> None:
    text = (
        "450 4.4.317 Cannot connect [Message=451 5.7.1 Client host [192.0.2.1 rejected "
        "[LastAttemptedIP=192.0.2.9:25]"
    )
    row = parse_replies([text]).iloc[0]
    assert row["remote_reply"] == "451 5.7.1 Client host [192.0.2.1 rejected"
    assert (row["smtp_code"], row["outer_code"], row["remote_ip"]) == (451, 450, "192.0.2.9")


_PIECES = st.sampled_from([
    "{LED=", "};{MSG=", "};{FQDN=", "};{IP=", "{LRT=", "}]", "[Message=", "[LastAttemptedIP=",
    "[LastAttemptedServerName=", "OutboundProxyTargetIP: ", "Server at ", " (", ") returned '",
    "Remote Server returned '", "responded with: \"", "expired, ", "](", "(", ")", "[", "]", "'", "\"",
    "550 ", "450 4.4.317 ", "5.7.1 ", "550-5.7.26 ", "#", ":25",
    " ", "\n", "\x00", "é", "x", "xxx", "192.0.2.1", "2a01::1", "mx.example.org",
    "[AB1CD.eop-nam1.prod.protection.outlook.com 2024-01-01T00:00:00.000Z 08DB1DF24DB12D84]",
])


def _check(values: list[object]) -> None:
    series = pd.Series(values, index=pd.RangeIndex(100, 100 + len(values)), dtype=object)
    out = parse_replies(series)
    assert out.index.equals(series.index)
    assert list(out.columns) == list(REPLY_COLUMNS)
    for column in ("smtp_code", "outer_code"):
        codes = out[column].dropna()
        assert ((codes >= 200) & (codes <= 599)).all()
    for column in ("enhanced_code", "outer_enhanced_code"):
        assert out[column].dropna().str.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}").all()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(), st.lists(_PIECES | st.text(max_size=5)).map("".join)),
                max_size=12))
def test_never_raises_on_arbitrary_text(values: list[object]) -> None:
    _check(values)


@settings(max_examples=25, deadline=None)
@given(st.lists(_PIECES, min_size=1, max_size=4).map("".join))
def test_adversarial_100kb(unit: str) -> None:
    big = (unit * (100_000 // len(unit) + 1))[:100_000]
    _check([big, "Reason: [{LED=450 4.4.317 x [Message=" + big, big + "}]"])


def test_non_string_values() -> None:
    values = [b"550 5.1.1 bytes", 421, 3.5, "\ud800 550 5.1.1 lone surrogate"]
    out = parse_replies(pd.Series(values, dtype=object))
    assert len(out) == 4
    assert out["smtp_code"].iloc[3] == 550

